package io.pageflux.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.pageflux.pipeline.DumpReport;
import io.pageflux.sink.SinkResult;
import io.pageflux.source.DataSize;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * The dump report as text for people and as JSON for scripts. The JSON is built field by field
 * (not by reflection) so its shape is a deliberate, documented interface.
 */
final class Reports {

    static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private Reports() {
    }

    static ObjectNode json(DumpReport r) {
        ObjectNode root = JSON.createObjectNode();
        root.put("pid", r.pid());
        root.put("kind", r.preDump() ? "pre-dump" : "full");
        ObjectNode regions = root.putObject("regions");
        regions.put("seen", r.regionsSeen());
        regions.put("dumped", r.regionsDumped());
        ObjectNode skipped = regions.putObject("skipped");
        r.regionsSkipped().forEach(skipped::put);
        root.put("runs", r.runs());
        ObjectNode pages = root.putObject("pages");
        pages.put("planned", r.pagesPlanned());
        pages.put("dumped", r.pagesDumped());
        pages.put("vanished", r.pagesVanished());
        ArrayNode vanished = pages.putArray("vanishedAddresses");
        r.vanishedAddresses().forEach(a -> vanished.add("0x" + Long.toHexString(a)));
        root.put("bytesDumped", r.bytesDumped());
        root.put("chunks", r.chunks());
        root.put("durationMillis", r.duration().toMillis());
        root.put("bytesPerSecond", Math.round(r.bytesPerSecond()));
        ObjectNode pool = root.putObject("buffers");
        pool.put("chunkSize", r.chunkSize());
        pool.put("capacity", r.poolCapacity());
        pool.put("budgetBytes", r.budgetBytes());
        pool.put("peakLeased", r.peakBuffersLeased());
        pool.put("peakBytes", r.peakBytesLeased());
        pool.put("waits", r.poolWaits());
        ArrayNode sinks = root.putArray("sinks");
        for (SinkResult s : r.sinks()) {
            ObjectNode n = sinks.addObject();
            n.put("sink", s.description());
            n.put("pages", s.pages());
            n.put("entries", s.entries());
            n.put("bytesWritten", s.bytesWritten());
        }
        return root;
    }

    static String text(DumpReport r) {
        StringBuilder sb = new StringBuilder();
        String where = r.sinks().stream().map(SinkResult::description).collect(Collectors.joining(", "));
        sb.append(String.format(Locale.ROOT, "%s pid=%d to %s in %s%n", r.preDump() ? "pre-dumped" : "dumped",
                r.pid(), where, seconds(r.duration().toNanos())));
        sb.append(String.format(Locale.ROOT, "  regions  %d seen, %d dumped, %d skipped%s%n", r.regionsSeen(),
                r.regionsDumped(), r.regionsSkippedTotal(), reasons(r.regionsSkipped())));
        sb.append(String.format(Locale.ROOT, "  pages    %d dumped (%s) in %s, %s; %d vanished%s%n",
                r.pagesDumped(), DataSize.format(r.bytesDumped()), plural(r.runs(), "run"), plural(r.chunks(), "chunk"),
                r.pagesVanished(),
                r.vanishedAddresses().isEmpty() ? ""
                        : " (first at 0x" + Long.toHexString(r.vanishedAddresses().get(0)) + ")"));
        sb.append(String.format(Locale.ROOT, "  speed    %s/s%n", DataSize.format((long) r.bytesPerSecond())));
        sb.append(String.format(Locale.ROOT, "  buffers  peak %d of %d leased (%s of %s budget, %s chunks), %d waits%n",
                r.peakBuffersLeased(), r.poolCapacity(), DataSize.format(r.peakBytesLeased()),
                DataSize.format(r.budgetBytes()), DataSize.format(r.chunkSize()), r.poolWaits()));
        for (SinkResult s : r.sinks()) {
            sb.append(String.format(Locale.ROOT, "  sink     %s: %d pages, %d entries, %s written%n", s.description(),
                    s.pages(), s.entries(), DataSize.format(s.bytesWritten())));
        }
        return sb.toString();
    }

    static String plural(long n, String noun) {
        return n + " " + noun + (n == 1 ? "" : "s");
    }

    static String reasons(Map<String, Long> skipped) {
        if (skipped.isEmpty()) {
            return "";
        }
        return skipped.entrySet().stream().map(e -> e.getValue() + " " + e.getKey())
                .collect(Collectors.joining(", ", " (", ")"));
    }

    static String seconds(long nanos) {
        return String.format(Locale.ROOT, "%.2f s", nanos / 1e9);
    }
}
