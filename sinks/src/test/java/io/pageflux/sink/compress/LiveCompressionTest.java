package io.pageflux.sink.compress;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.SinkResult;
import io.pageflux.sink.TestChunks;
import io.pageflux.sink.criu.CriuImageOptions;
import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.sink.criu.Vectors;
import io.pageflux.sink.stream.StreamSink;
import io.pageflux.sink.stream.StreamUnpacker;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.LiveProcess;
import io.pageflux.source.PagemapId;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A real process dumped through a tee: plain directory, compressed directory and stream from the same chunks. */
class LiveCompressionTest {

    @TempDir
    Path tmp;

    @Test
    void aLiveDumpCompressedAndStreamedUnpacksToThePlainDumpOfTheSameChunks() throws Exception {
        try (SampleProcess sample = SampleProcess.start(4, false)) {
            LiveProcess target = LiveProcess.attach(sample.pid());
            BufferPool pool = BufferPool.create(DataSize.ofMebibytes(2), DataSize.ofKibibytes(128));
            DumpContext context = DumpContext.of(sample.pid(), target.regions(), 1_000_000L);
            Path plain = tmp.resolve("plain");
            Path packed = tmp.resolve("packed");
            ByteArrayOutputStream stream = new ByteArrayOutputStream();
            SinkResult r = PageSinks.tee(
                            PageSinks.criuImages(plain),
                            CompressedSinks.criuImages(packed, CompressionOptions.of(Codec.zstd(3), pool),
                                    CriuImageOptions.defaults()),
                            StreamSink.to(Channels.newChannel(stream), CompressionOptions.of(Codec.lz4(), pool)))
                    .write(context, target.pages(ReadOptions.of(pool)))
                    .block(Duration.ofSeconds(60));
            assertTrue(r.pages() > 64 + 16 + 16 + 8, "pages: " + r.pages());
            TestChunks.await(() -> pool.leasedBuffers() == 0, "every buffer back in the pool");

            CompressedImages.unpack(packed, tmp.resolve("from-dir"), false);
            PageData.assertSameTree(plain, tmp.resolve("from-dir"));
            StreamUnpacker.unpack(new ByteArrayInputStream(stream.toByteArray()), tmp.resolve("from-stream"), false);
            PageData.assertSameTree(plain, tmp.resolve("from-stream"));

            // region A's known contents, read straight from the compressed directory
            try (PageImages images = PageImages.open(packed)) {
                PagemapImage pm = images.directory().pagemap(PagemapId.task(sample.pid())).orElseThrow();
                long a = sample.address(Region.A);
                PagemapImage.Entry e = pm.entries().stream().filter(x -> x.present() && x.vaddr() <= a && a < x.end())
                        .findFirst().orElseThrow();
                long page = (a - e.vaddr()) / 4096 + 10;
                ByteBuffer got = images.readPages(pm, e, page, 1);
                byte[] bytes = new byte[4096];
                got.get(bytes);
                assertArrayEquals(SampleProcess.expectedPage(Region.A, 10), bytes);
            }
        }
    }

    /** crit, an independent decoder, reads the compressed directory's pagemaps like our reader. */
    @Test
    void critDecodesTheCompressedDirectorysPagemaps() throws Exception {
        Path crit = Stream.of("/usr/bin/crit", "/usr/sbin/crit").map(Path::of).filter(Files::isExecutable)
                .findFirst().orElse(null);
        Assumptions.assumeTrue(crit != null, "crit is not installed");
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(512), DataSize.ofKibibytes(128));
        Path packed = tmp.resolve("packed");
        CompressedSinks.criuImages(packed, Codec.gzip(6), pool)
                .write(DumpContext.of(PageData.PID, List.of(), 77L), TestChunks.stream(PageData.runs(13), pool))
                .block(Duration.ofSeconds(30));
        try (PageImages images = PageImages.open(packed)) {
            for (PagemapImage pm : images.directory().pagemaps()) {
                Process p = new ProcessBuilder(crit.toString(), "decode", "-i", pm.file().toString())
                        .redirectErrorStream(true).start();
                String out;
                try {
                    out = new String(p.getInputStream().readAllBytes());
                    assertTrue(p.waitFor(30, TimeUnit.SECONDS), "crit timed out");
                    assertEquals(0, p.exitValue(), out);
                } finally {
                    p.destroyForcibly();
                }
                JsonNode entries = Vectors.JSON.readTree(out).get("entries");
                assertEquals(pm.pagesId(), entries.get(0).get("pages_id").asLong());
                assertEquals(pm.entries().size() + 1, entries.size());
                for (PagemapImage.Entry e : pm.entries()) {
                    JsonNode j = entries.get(e.index() + 1);
                    assertEquals(e.vaddr(), j.get("vaddr").asLong(), pm.id() + " " + e);
                    assertEquals(e.nrPages(), j.get("nr_pages").asLong(), pm.id() + " " + e);
                    assertEquals(e.flags(), j.get("flags").asInt(), pm.id() + " " + e);
                }
            }
        }
    }
}
