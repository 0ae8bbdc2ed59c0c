package io.pageflux.bench;

import io.pageflux.pipeline.Dump;
import io.pageflux.pipeline.DumpReport;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.source.DataSize;
import io.pageflux.source.LiveProcess;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * The same dump run several times in ONE JVM, as a library user's application runs it: the first
 * run pays class loading and JIT warm-up, the later ones show the steady state. Used by
 * {@code benchmarks/whole-process.sh} for its "warm" rows.
 *
 * <pre>
 *   java -cp benchmarks/target/benchmarks.jar io.pageflux.bench.WarmDump PID null|DIR RUNS [BUDGET] [READ_THREADS] [PAUSE_MS]
 * </pre>
 *
 * Prints one line per run: {@code run=N seconds=S bytes=B gibps=G} (the dump's own duration, from
 * subscribing to the report; a directory sink includes its fsync and rename). A DIR is deleted after
 * every run, outside the measured time (replacing it with {@code --force} would count the deletion of
 * the previous dump's gigabytes). With PAUSE_MS, {@code sync} runs and the JVM sleeps that long before
 * every run, like {@code whole-process.sh --settle} does before the C reference's runs (on a VM that
 * hands freed memory back to its host, page cache filled soon after a delete is much faster to fill
 * than page cache filled seconds later).
 */
public final class WarmDump {

    private WarmDump() {
    }

    public static void main(String[] args) throws IOException {
        if (args.length < 3) {
            System.err.println("usage: WarmDump PID null|DIR RUNS [BUDGET] [READ_THREADS] [PAUSE_MS]");
            System.exit(2);
        }
        int pid = Integer.parseInt(args[0]);
        Path dir = args[1].equals("null") ? null : Path.of(args[1]);
        int runs = Integer.parseInt(args[2]);
        DataSize budget = args.length > 3 ? DataSize.parse(args[3]) : Dump.DEFAULT_BUDGET;
        int readThreads = args.length > 4 ? Integer.parseInt(args[4]) : 1;
        long pauseMillis = args.length > 5 ? Long.parseLong(args[5]) : 0;
        for (int i = 1; i <= runs; i++) {
            if (pauseMillis > 0) {
                settle(pauseMillis);
            }
            PageSink sink = dir == null ? PageSinks.nullSink()
                    : PageSinks.criuImages(dir);
            DumpReport report = Dump.of(LiveProcess.attach(pid))
                    .budget(budget)
                    .readThreads(readThreads)
                    .to(sink)
                    .run()
                    .block();
            double seconds = report.duration().toNanos() / 1e9;
            System.out.printf("run=%d seconds=%.4f bytes=%d gibps=%.3f%n", i, seconds, report.bytesDumped(),
                    report.bytesDumped() / seconds / (1L << 30));
            System.out.flush();
            delete(dir);
        }
        System.exit(0);
    }

    private static void settle(long pauseMillis) throws IOException {
        try {
            new ProcessBuilder("sync").inheritIO().start().waitFor();
            Thread.sleep(pauseMillis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while settling", e);
        }
    }

    private static void delete(Path dir) throws IOException {
        if (dir != null && Files.exists(dir)) {
            try (Stream<Path> files = Files.walk(dir)) {
                for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
                    Files.delete(p);
                }
            }
        }
    }
}
