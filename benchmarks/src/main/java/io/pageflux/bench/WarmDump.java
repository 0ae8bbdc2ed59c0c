package io.pageflux.bench;

import io.pageflux.pipeline.Dump;
import io.pageflux.pipeline.DumpReport;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.pageserver.PageServerSinks;
import io.pageflux.source.DataSize;
import io.pageflux.source.LiveProcess;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

/**
 * The same dump run several times in ONE JVM, as a library user's application runs it: the first
 * run pays class loading and JIT warm-up, the later ones show the steady state. Used by
 * {@code benchmarks/whole-process.sh} for its "warm" rows and by {@code benchmarks/page-server.sh
 * --warm-client}.
 *
 * <pre>
 *   java -cp benchmarks/target/benchmarks.jar io.pageflux.bench.WarmDump [--clean-sessions DIR]... \
 *       PID TO RUNS [BUDGET] [READ_THREADS] [PAUSE_MS]
 *   TO = null | DIR | tcp://HOST:PORT[,tcp://HOST:PORT...]
 * </pre>
 *
 * Prints one line per run: {@code run=N seconds=S bytes=B gibps=G} (the dump's own duration, from
 * subscribing to the report; a directory sink includes its fsync and rename, a page server its CLOSE
 * answer, which comes after the server committed the pages). A DIR is deleted after every run,
 * outside the measured time (replacing it with {@code --force} would count the deletion of the
 * previous dump's gigabytes). With several {@code tcp://} targets every run dumps to each of them in
 * turn (lines then also say {@code to=}), so that servers compared in one JVM see the same warm client
 * and the same moments of a noisy machine. {@code --clean-sessions DIR} (a page server's directory,
 * repeatable): after every dump to a page server, outside the measured time, wait (up to 10 s) until the
 * server published the session in one of them, then delete every published session directory in them,
 * so that the server's file system does not fill up run after run (a 1 GiB dump on a tmpfs). With
 * PAUSE_MS, {@code sync} runs and the JVM sleeps that long before every run, like {@code whole-process.sh
 * --settle} does before the C reference's runs (on a VM that hands freed memory back to its host, page
 * cache filled soon after a delete is much faster to fill than page cache filled seconds later).
 */
public final class WarmDump {

    private static final String USAGE = "usage: WarmDump [--clean-sessions DIR]... PID null|DIR|tcp://HOST:PORT[,...] RUNS"
            + " [BUDGET] [READ_THREADS] [PAUSE_MS]";

    private WarmDump() {
    }

    public static void main(String[] argv) throws IOException {
        List<Path> clean = new ArrayList<>();
        List<String> args = new ArrayList<>();
        for (int i = 0; i < argv.length; i++) {
            if (argv[i].equals("--clean-sessions") && i + 1 < argv.length) {
                clean.add(Path.of(argv[++i]));
            } else {
                args.add(argv[i]);
            }
        }
        if (args.size() < 3) {
            System.err.println(USAGE);
            System.exit(2);
        }
        int pid = Integer.parseInt(args.get(0));
        String to = args.get(1);
        List<String> servers = to.startsWith("tcp://") ? List.of(to.split(",")) : List.of();
        Path dir = to.equals("null") || !servers.isEmpty() ? null : Path.of(to);
        int runs = Integer.parseInt(args.get(2));
        DataSize budget = args.size() > 3 ? DataSize.parse(args.get(3)) : Dump.DEFAULT_BUDGET;
        int readThreads = args.size() > 4 ? Integer.parseInt(args.get(4)) : 1;
        long pauseMillis = args.size() > 5 ? Long.parseLong(args.get(5)) : 0;
        for (int i = 1; i <= runs; i++) {
            for (String server : servers.isEmpty() ? Collections.singletonList((String) null) : servers) {
                if (pauseMillis > 0) {
                    settle(pauseMillis);
                }
                PageSink sink = server != null ? pageServer(server)
                        : dir == null ? PageSinks.nullSink() : PageSinks.criuImages(dir);
                DumpReport report = Dump.of(LiveProcess.attach(pid))
                        .budget(budget)
                        .readThreads(readThreads)
                        .to(sink)
                        .run()
                        .block();
                double seconds = report.duration().toNanos() / 1e9;
                System.out.printf("run=%d%s seconds=%.4f bytes=%d gibps=%.3f%n", i,
                        servers.size() > 1 ? " to=" + server : "", seconds, report.bytesDumped(),
                        report.bytesDumped() / seconds / (1L << 30));
                System.out.flush();
                delete(dir);
                if (server != null && !clean.isEmpty()) {
                    cleanSessions(clean);
                }
            }
        }
        System.exit(0);
    }

    /** {@code tcp://HOST:PORT} as a page-server sink. */
    private static PageSink pageServer(String url) {
        String hostPort = url.substring("tcp://".length());
        int colon = hostPort.lastIndexOf(':');
        if (colon <= 0) {
            throw new IllegalArgumentException("target=" + url + " is not tcp://HOST:PORT; " + USAGE);
        }
        return PageServerSinks.connect(hostPort.substring(0, colon), Integer.parseInt(hostPort.substring(colon + 1)));
    }

    /**
     * Waits until a page server published the session just sent (a name not starting with a dot: the
     * server renames it after the client hung up, so just after the CLOSE answer), then deletes every
     * published session in {@code dirs}.
     */
    private static void cleanSessions(List<Path> dirs) throws IOException {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (published(dirs).isEmpty() && System.nanoTime() < deadline) {
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while waiting for the page server's session", e);
            }
        }
        for (Path session : published(dirs)) {
            delete(session);
        }
    }

    private static List<Path> published(List<Path> dirs) throws IOException {
        List<Path> found = new ArrayList<>();
        for (Path d : dirs) {
            try (Stream<Path> s = Files.list(d)) {
                s.filter(p -> !p.getFileName().toString().startsWith(".") && Files.isDirectory(p)).forEach(found::add);
            }
        }
        return found;
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
