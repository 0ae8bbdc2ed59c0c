package io.pageflux.sink.pageserver;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.SinkResult;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.LiveProcess;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.sample.SampleProcess;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import java.util.stream.Stream;

/**
 * Not a test: a manual loopback benchmark (see the page-server README section). Dumps a sample
 * process with N MiB of touched memory to the null sink, to a local image directory, through
 * {@link PageServerSink} into {@link PageServer}, and copies the same number of bytes with
 * socat (file to TCP to file) for comparison. Prints the best of several rounds.
 *
 * <pre>java -Djava.io.tmpdir=/dev/shm -cp ... io.pageflux.sink.pageserver.PageServerThroughput [MiB=512] [rounds=5]</pre>
 *
 * Client and server run warm in this one JVM: it measures the data path. The command-line path
 * (a fresh client JVM per dump) is measured by {@code benchmarks/page-server.sh}. The files go under
 * {@code java.io.tmpdir}: a tmpfs keeps the disk out of the comparison.
 */
public final class PageServerThroughput {

    private static double lastSocatDurable;

    private PageServerThroughput() {
    }

    public static void main(String[] args) throws Exception {
        long mib = args.length > 0 ? Long.parseLong(args[0]) : 512;
        int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 5;
        Path base = Files.createTempDirectory("pageserver-bench");
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(64), DataSize.ofMebibytes(4));
        try (SampleProcess target = SampleProcess.start(mib, false);
             PageServer server = PageServer.builder().directory(base.resolve("received")).port(0).start()) {
            LiveProcess process = LiveProcess.attach(target.pid());
            DumpContext context = DumpContext.of(target.pid(), process.regions(), 1);
            Supplier<PageSink> nullSink = PageSinks::nullSink;
            int[] n = {0};
            Supplier<PageSink> local = () -> PageSinks.criuImages(base.resolve("local-" + n[0]++));
            Supplier<PageSink> remote = () -> PageServerSinks.connect("127.0.0.1", server.boundPort());
            long bytes = 0;
            double bestNull = 0, bestLocal = 0, bestRemote = 0, bestSocat = 0, bestSocatSync = 0;
            for (int r = 0; r < rounds; r++) {
                bestNull = Math.max(bestNull, rate(process, context, pool, nullSink.get())[0]);
                bestLocal = Math.max(bestLocal, rate(process, context, pool, local.get())[0]);
                double[] remoteRate = rate(process, context, pool, remote.get());
                bestRemote = Math.max(bestRemote, remoteRate[0]);
                bytes = (long) remoteRate[1];
                bestSocat = Math.max(bestSocat, socat(base, bytes));
                bestSocatSync = Math.max(bestSocatSync, lastSocatDurable);
                clean(base, "local-");
                cleanChildren(base.resolve("received"));
            }
            System.out.printf("sample=%d MiB wire=%d bytes pool=%s%n", mib, bytes, pool.budget());
            System.out.printf("null sink          %8.0f MiB/s%n", bestNull);
            System.out.printf("local images       %8.0f MiB/s%n", bestLocal);
            System.out.printf("page server (tcp)  %8.0f MiB/s%n", bestRemote);
            System.out.printf("socat -b1M file>tcp>file %5.0f MiB/s  (page server / socat = %.2f)%n", bestSocat,
                    bestRemote / bestSocat);
            System.out.printf("socat + fsync          %5.0f MiB/s  (page server / socat+fsync = %.2f)%n", bestSocatSync,
                    bestRemote / bestSocatSync);
        } finally {
            clean(base, "");
        }
    }

    /** MiB/s of page bytes, and the bytes that went over the wire. */
    private static double[] rate(LiveProcess process, DumpContext context, BufferPool pool, PageSink sink) {
        long t0 = System.nanoTime();
        SinkResult r = sink.write(context, process.pages(ReadOptions.of(pool))).block();
        double seconds = (System.nanoTime() - t0) / 1e9;
        return new double[] {r.pages() * 4096.0 / (1 << 20) / seconds, r.bytesWritten()};
    }

    /** socat copying {@code bytes} from a file (in the page cache) over loopback TCP into a file. */
    private static double socat(Path base, long bytes) throws Exception {
        Path source = base.resolve("socat-source");
        if (!Files.exists(source) || Files.size(source) != bytes) {
            try (var ch = java.nio.channels.FileChannel.open(source, java.nio.file.StandardOpenOption.CREATE,
                    java.nio.file.StandardOpenOption.WRITE, java.nio.file.StandardOpenOption.TRUNCATE_EXISTING)) {
                java.nio.ByteBuffer b = java.nio.ByteBuffer.allocateDirect(1 << 20);
                for (long left = bytes; left > 0; left -= b.limit()) {
                    b.clear().limit((int) Math.min(b.capacity(), left));
                    while (b.hasRemaining()) {
                        b.put((byte) (left + b.position()));
                    }
                    b.flip();
                    ch.write(b);
                }
            }
        }
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        Path target = base.resolve("socat-target");
        Process receiver = new ProcessBuilder("socat", "-u", "-b", "1048576", "TCP-LISTEN:" + port + ",bind=127.0.0.1,reuseaddr",
                "CREATE:" + target).inheritIO().start();
        Thread.sleep(200);
        long t0 = System.nanoTime();
        Process sender = new ProcessBuilder("socat", "-u", "-b", "1048576", "OPEN:" + source, "TCP:127.0.0.1:" + port).inheritIO().start();
        sender.waitFor(60, TimeUnit.SECONDS);
        receiver.waitFor(60, TimeUnit.SECONDS);
        double seconds = (System.nanoTime() - t0) / 1e9;
        // the page server fsyncs before it answers CLOSE; make the plain copy as durable
        new ProcessBuilder("sync", target.toString()).inheritIO().start().waitFor(60, TimeUnit.SECONDS);
        double durable = (System.nanoTime() - t0) / 1e9;
        lastSocatDurable = bytes / (double) (1 << 20) / durable;
        if (Files.size(target) != bytes) {
            throw new IOException("socat copied " + Files.size(target) + " of " + bytes + " bytes");
        }
        return bytes / (double) (1 << 20) / seconds;
    }

    private static void cleanChildren(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            for (Path p : s.toList()) {
                clean(p, "");
            }
        }
    }

    private static void clean(Path dir, String prefix) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        List<Path> all;
        try (Stream<Path> s = Files.walk(dir)) {
            all = s.sorted(Comparator.reverseOrder()).toList();
        }
        for (Path p : all) {
            if (prefix.isEmpty() || p.startsWith(dir) && dir.relativize(p).toString().startsWith(prefix)) {
                Files.deleteIfExists(p);
            }
        }
    }
}
