package io.pageflux.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.pageflux.pipeline.DumpProgress;
import io.pageflux.pipeline.DumpReport;
import io.pageflux.sink.SinkResult;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The report's JSON shape and text, the progress line, and --to parsing (no target involved). */
class ReportsTest {

    private static final DumpReport REPORT = new DumpReport(1234, false, 27, 24,
            Map.of("[vvar]: kernel data, never dumped", 1L, "shared file mapping", 2L), 33, 133, 131, 3, 2,
            List.of(0x7f0000001000L, 0x7f0000002000L), Duration.ofMillis(500), 4 << 20, 16, 2, 1,
            List.of(new SinkResult("dir:/tmp/d1", 131, 536_576, 30)));

    @Test
    void jsonHasTheDocumentedShape() throws Exception {
        JsonNode j = Reports.JSON.readTree(Reports.json(REPORT).toString());
        assertEquals(1234, j.get("pid").asInt());
        assertEquals("full", j.get("kind").asText());
        assertEquals(27, j.at("/regions/seen").asLong());
        assertEquals(24, j.at("/regions/dumped").asLong());
        assertEquals(2, j.at("/regions/skipped/shared file mapping").asLong());
        assertEquals(133, j.at("/pages/planned").asLong());
        assertEquals(131, j.at("/pages/dumped").asLong());
        assertEquals(2, j.at("/pages/vanished").asLong());
        assertEquals("0x7f0000001000", j.at("/pages/vanishedAddresses/0").asText());
        assertEquals(131L * 4096, j.get("bytesDumped").asLong());
        assertEquals(500, j.get("durationMillis").asLong());
        assertEquals(131L * 4096 * 2, j.get("bytesPerSecond").asLong());
        assertEquals(64L << 20, j.at("/buffers/budgetBytes").asLong());
        assertEquals(2, j.at("/buffers/peakLeased").asInt());
        assertEquals(8L << 20, j.at("/buffers/peakBytes").asLong());
        assertEquals(1, j.at("/buffers/waits").asLong());
        assertEquals("dir:/tmp/d1", j.at("/sinks/0/sink").asText());
        assertEquals(30, j.at("/sinks/0/entries").asLong());
    }

    @Test
    void textSummarisesEveryPart() {
        String t = Reports.text(REPORT);
        assertEquals("""
                dumped pid=1234 to dir:/tmp/d1 in 0.50 s
                  regions  27 seen, 24 dumped, 3 skipped (1 [vvar]: kernel data, never dumped, 2 shared file mapping)
                  pages    131 dumped (524 KiB) in 33 runs, 3 chunks; 2 vanished (first at 0x7f0000001000)
                  speed    1.0 MiB/s
                  buffers  peak 2 of 16 leased (8 MiB of 64 MiB budget, 4 MiB chunks), 1 waits
                  sink     dir:/tmp/d1: 131 pages, 30 entries, 524 KiB written
                """, t);
    }

    @Test
    void progressLineShowsDonePlannedRateAndEta() {
        // 1 MiB of 4 MiB in 1 s: 1 MiB/s, 3 s to go
        DumpProgress p = new DumpProgress(256, 1024, 0, Duration.ofSeconds(1), 3, false);
        assertEquals("[#######.....................]  25%  1 MiB / 4 MiB  1 MiB/s  ETA 0:03", ProgressBar.render(p));
        DumpProgress done = new DumpProgress(1020, 1024, 4, Duration.ofSeconds(2), 0, true);
        assertEquals("[############################] 100%  3.98 MiB / 4 MiB  2 MiB/s  done  vanished 4 pages"
                .replace("3.98 MiB", io.pageflux.source.DataSize.format(1020L * 4096))
                .replace("2 MiB/s", io.pageflux.source.DataSize.format(1020L * 4096 / 2) + "/s"), ProgressBar.render(done));
        assertEquals("1:01:01", ProgressBar.clock(Duration.ofSeconds(3661)));
        // a freezing dump states how long the target has been stopped so far
        assertEquals("[#######.....................]  25%  1 MiB / 4 MiB  1 MiB/s  ETA 0:03  frozen 4.3 ms",
                ProgressBar.render(p.withFrozen(Duration.ofNanos(4_321_000))));
    }

    @Test
    void destinationsParse() {
        assertEquals(Destination.directory(Path.of("/tmp/d1")), Destination.parse("dir:/tmp/d1"));
        assertEquals(Destination.directory(Path.of("/tmp/d1")), Destination.parse("dir:///tmp/d1"));
        assertEquals(Destination.Kind.NULL, Destination.parse("null").kind());
        CliException e = org.junit.jupiter.api.Assertions.assertThrows(CliException.class, () -> Destination.parse("dir:"));
        assertEquals(ExitCodes.BAD_INPUT, e.exitCode());
        assertTrue(e.getMessage().contains("e.g. --to dir:/tmp/d1"), e.getMessage());
    }
}
