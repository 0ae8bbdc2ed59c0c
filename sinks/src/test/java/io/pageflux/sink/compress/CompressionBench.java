package io.pageflux.sink.compress;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.SinkResult;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.PooledBuffer;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLong;
import reactor.core.publisher.Flux;

/**
 * Compression ratio and speed on realistic data — not a test, run by hand:
 * {@code java -cp <test classpath> io.pageflux.sink.compress.CompressionBench [MiB] [outDir]}.
 * Data sets: JSON-lines text, heap-like structs, and the JDK's {@code lib/modules} (class files).
 * For each codec: one core compressing 1 MiB frames, then the whole compressed-directory sink
 * (parallel compression on all cores + writing to {@code outDir}, fsync included) fed from
 * memory; codec {@code none} is the plain CRIU sink for comparison.
 */
public final class CompressionBench {

    private CompressionBench() {
    }

    public static void main(String[] args) throws IOException {
        int mib = args.length > 0 ? Integer.parseInt(args[0]) : 128;
        Path outDir = Path.of(args.length > 1 ? args[1] : "/tmp/pageflux-bench");
        Files.createDirectories(outDir);
        Path modules = Path.of(System.getProperty("java.home"), "lib", "modules");
        byte[][] sets = {PageData.text(1, mib * 256), PageData.structured(2, mib * 256), head(modules, mib)};
        String[] names = {"json-text", "heap-structs", "jdk-modules"};
        List<String> codecs = List.of("none", "lz4", "zstd:1", "zstd:3", "gzip:1");
        System.out.printf(Locale.ROOT, "cores=%d data=%d MiB each%n", Runtime.getRuntime().availableProcessors(), mib);
        System.out.printf(Locale.ROOT, "%-13s %-7s %7s %12s %12s %14s%n", "data", "codec", "ratio", "1-core MB/s",
                "unpack MB/s", "sink MB/s");
        for (int d = 0; d < sets.length; d++) {
            ByteBuffer raw = ByteBuffer.allocateDirect(sets[d].length).put(sets[d]).flip();
            for (String spec : codecs) {
                Codec codec = Codec.parse(spec);
                double[] single = singleCore(codec, raw);
                Path dir = outDir.resolve(names[d] + "-" + spec.replace(':', '-'));
                // best of three: the machine is shared, and the first runs warm up the JIT
                double sink = Math.max(sink(codec, raw, dir), Math.max(sink(codec, raw, dir), sink(codec, raw, dir)));
                System.out.printf(Locale.ROOT, "%-13s %-7s %7.2f %12.0f %12.0f %14.0f%n", names[d], spec, single[0],
                        single[1], single[2], sink);
            }
        }
    }

    private static byte[] head(Path file, int mib) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            int n = (int) Math.min(ch.size(), (long) mib << 20) / PageRun.PAGE_SIZE * PageRun.PAGE_SIZE;
            ByteBuffer b = ByteBuffer.allocate(n);
            while (b.hasRemaining() && ch.read(b) > 0) {
                // read on
            }
            return b.array();
        }
    }

    /** {ratio raw/stored, compress MB/s, decompress MB/s} on one thread, 1 MiB frames, best of 3. */
    private static double[] singleCore(Codec codec, ByteBuffer raw) {
        int frame = 1 << 20;
        ByteBuffer out = ByteBuffer.allocateDirect(raw.remaining());
        ByteBuffer back = ByteBuffer.allocateDirect(frame);
        double best = 0;
        double bestDecode = 0;
        long stored = 0;
        try (Frames frames = new Frames(codec)) {
            for (int round = 0; round < 3; round++) {
                out.clear();
                FrameHeader[] headers = new FrameHeader[raw.remaining() / frame + 1];
                int[] offsets = new int[headers.length];
                long t0 = System.nanoTime();
                int n = 0;
                for (int at = 0; at < raw.limit(); at += frame, n++) {
                    offsets[n] = out.position();
                    headers[n] = frames.encode(raw.duplicate().position(at).limit(Math.min(at + frame, raw.limit())), out);
                }
                long t1 = System.nanoTime();
                stored = out.position();
                for (int i = 0; i < n; i++) {
                    frames.decode(headers[i], out.duplicate().position(offsets[i]).limit(offsets[i]
                            + headers[i].storedLength()), back.clear());
                }
                long t2 = System.nanoTime();
                best = Math.max(best, raw.limit() / 1e6 / ((t1 - t0) / 1e9));
                bestDecode = Math.max(bestDecode, raw.limit() / 1e6 / ((t2 - t1) / 1e9));
            }
        }
        return new double[] {(double) raw.limit() / stored, best, bestDecode};
    }

    /** MB/s of raw data through a CompressedImageSink (all cores) into {@code dir}, fed from memory. */
    private static double sink(Codec codec, ByteBuffer raw, Path dir) throws IOException {
        deleteTree(dir);
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(64), DataSize.ofMebibytes(4));
        int chunk = pool.chunkSize();
        AtomicLong seq = new AtomicLong();
        long base = 0x7f00_0000_0000L;
        Flux<PageChunk> chunks = Flux.<PageChunk>generate(sink -> {
            long at = seq.get() * chunk;
            if (at >= raw.limit()) {
                sink.complete();
                return;
            }
            PooledBuffer b = pool.tryAcquire();
            if (b == null) {
                sink.error(new IllegalStateException("pool empty: " + pool));
                return;
            }
            int n = (int) Math.min(chunk, raw.limit() - at);
            b.buffer().put(raw.duplicate().position((int) at).limit((int) at + n));
            PageRun run = new PageRun(base + at, n / PageRun.PAGE_SIZE, PagemapId.task(1), base + at,
                    PageFlags.PE_PRESENT);
            sink.next(PageChunk.of(b, n, List.of(run), seq.getAndIncrement()));
        }).limitRate(4);
        long t0 = System.nanoTime();
        // "none": the plain CRIU sink, for comparison
        SinkResult r = (codec.algorithm() == Codec.Algorithm.NONE ? io.pageflux.sink.PageSinks.criuImages(dir)
                : CompressedSinks.criuImages(dir, codec, pool))
                .write(DumpContext.of(1, List.of(), 0), chunks.doOnDiscard(PageChunk.class, PageChunk::release))
                .block();
        long t1 = System.nanoTime();
        if (r.pages() * PageRun.PAGE_SIZE != raw.limit()) {
            throw new IllegalStateException("wrote " + r);
        }
        deleteTree(dir);
        return raw.limit() / 1e6 / ((t1 - t0) / 1e9);
    }

    private static void deleteTree(Path dir) throws IOException {
        if (Files.exists(dir)) {
            try (var s = Files.walk(dir)) {
                for (Path p : s.sorted(java.util.Comparator.reverseOrder()).toList()) {
                    Files.delete(p);
                }
            }
        }
    }
}
