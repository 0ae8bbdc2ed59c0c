package io.pageflux.sink.compress;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.SinkResult;
import io.pageflux.sink.TestChunks;
import io.pageflux.sink.criu.CriuImageOptions;
import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.ImageFormatException;
import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.sink.criu.Vectors;
import io.pageflux.sink.criu.Vectors.SourceRun;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;
import reactor.test.StepVerifier;

class CompressedImageSinkTest {

    private static final DumpContext CONTEXT = DumpContext.of(PageData.PID, List.of(), 987_654_321L);

    @TempDir
    Path tmp;

    /** 32-page chunks: the runs of {@link PageData#runs} spread over about 40 chunks. */
    private static BufferPool pool(int capacity) {
        return BufferPool.create(DataSize.ofKibibytes(128L * capacity), DataSize.ofKibibytes(128));
    }

    private static SinkResult write(PageSink sink, DumpContext context, Flux<PageChunk> chunks) {
        return sink.write(context, chunks).block(Duration.ofSeconds(30));
    }

    @ParameterizedTest
    @ValueSource(strings = {"zstd:1", "zstd:3", "lz4", "gzip:6"})
    void unpacksToExactlyWhatThePlainSinkWrites(String spec) throws IOException, InterruptedException {
        List<SourceRun> runs = PageData.runs(7);
        BufferPool pool = pool(8);
        Path plain = tmp.resolve("plain");
        Path packed = tmp.resolve("packed");
        Path unpacked = tmp.resolve("unpacked");
        SinkResult p = write(PageSinks.criuImages(plain), CONTEXT, TestChunks.stream(runs, pool));
        Codec codec = Codec.parse(spec);
        SinkResult c = write(CompressedSinks.criuImages(packed, codec, pool), CONTEXT, TestChunks.stream(runs, pool));
        TestChunks.await(() -> pool.leasedBuffers() == 0, "every buffer back in the pool");

        assertEquals(PageData.presentPages(runs), c.pages());
        assertEquals(p.pages(), c.pages());
        assertEquals(p.entries(), c.entries());
        String suffix = codec.fileSuffix();
        assertEquals(List.of("inventory.img", "pagemap-4242.img", "pagemap-shmem-77.img", "pages-1.img" + suffix,
                "pages-2.img" + suffix), PageData.names(packed));
        // pagemaps and inventory are the plain sink's, byte for byte; only the page data differs
        for (String same : List.of("inventory.img", "pagemap-4242.img", "pagemap-shmem-77.img")) {
            assertEquals(-1L, Files.mismatch(plain.resolve(same), packed.resolve(same)), same);
        }
        long plainBytes = Files.size(plain.resolve("pages-1.img")) + Files.size(plain.resolve("pages-2.img"));
        long packedBytes = Files.size(packed.resolve("pages-1.img" + suffix))
                + Files.size(packed.resolve("pages-2.img" + suffix));
        assertTrue(packedBytes < plainBytes / 2, spec + ": " + packedBytes + " of " + plainBytes);
        assertTrue(c.bytesWritten() < p.bytesWritten(), c + " vs " + p);

        try (PageImages images = PageImages.open(packed)) {
            assertTrue(images.verify() > 2, "every frame verified");
        }
        UnpackResult u = CompressedImages.unpack(packed, unpacked, false);
        PageData.assertSameTree(plain, unpacked);
        assertEquals(p.pages(), u.pages());
        assertEquals(p.entries(), u.entries());
        assertEquals(2, u.pagemaps());
        ImageDirectory.open(unpacked).verify();
    }

    @Test
    void criuVectorRunsGiveTheSameDirectoryAsThePlainSink() throws IOException, InterruptedException {
        // the task and shared-object runs of CRIU's own full dump, with the full-dump region list:
        // shmem pagemap first (pages-1), as CRIU does
        List<SourceRun> runs = Vectors.runs(Vectors.dir("full-dump"), 0);
        DumpContext context = DumpContext.of(Vectors.PID, Vectors.maps(), 5_000_000L);
        BufferPool pool = pool(4);
        Path plain = tmp.resolve("plain");
        Path packed = tmp.resolve("packed");
        write(PageSinks.criuImages(plain), context, TestChunks.stream(runs, pool));
        write(CompressedSinks.criuImages(packed, Codec.zstd(3), pool), context, TestChunks.stream(runs, pool));
        assertEquals(List.of("inventory.img", "pagemap-21384.img", "pagemap-shmem-32.img", "pages-1.img.zst",
                "pages-2.img.zst"), PageData.names(packed));
        CompressedImages.unpack(packed, tmp.resolve("out"), false);
        PageData.assertSameTree(plain, tmp.resolve("out"));
        // and the page bytes are CRIU's
        ImageDirectory criu = ImageDirectory.open(Vectors.dir("full-dump"));
        try (PageImages images = PageImages.open(packed)) {
            for (PagemapImage pm : images.directory().pagemaps()) {
                PagemapImage theirs = criu.pagemap(pm.id()).orElseThrow();
                assertEquals(theirs.presentPages(), pm.presentPages(), pm.id().toString());
                for (PagemapImage.Entry e : pm.entries()) {
                    if (e.present()) {
                        ByteBuffer ours = images.readPages(pm, e);
                        ByteBuffer expected = readByAddress(criu, theirs, e.vaddr(), (int) e.nrPages());
                        assertEquals(expected, ours, pm.id() + " " + e);
                    }
                }
            }
        }
    }

    /** Bytes of {@code pages} pages at {@code vaddr} from a plain directory, across its entries. */
    private static ByteBuffer readByAddress(ImageDirectory dir, PagemapImage pm, long vaddr, int pages)
            throws IOException {
        ByteBuffer out = ByteBuffer.allocate(pages * 4096);
        long at = vaddr;
        while (out.hasRemaining()) {
            long a = at;
            PagemapImage.Entry e = pm.entries().stream().filter(x -> x.present() && x.vaddr() <= a && a < x.end())
                    .findFirst().orElseThrow(() -> new AssertionError("no entry for 0x" + Long.toHexString(a)));
            long from = (a - e.vaddr()) / 4096;
            int n = (int) Math.min(e.nrPages() - from, out.remaining() / 4096);
            out.put(dir.readPages(pm, e, from, n));
            at += n * 4096L;
        }
        return out.flip();
    }

    @Test
    void inspectReadsOneRunFromTheMiddleOfACompressedFileAndFromPlainOnes() throws IOException {
        List<SourceRun> runs = PageData.runs(11);
        BufferPool pool = pool(8);
        Path plain = tmp.resolve("plain");
        Path packed = tmp.resolve("packed");
        write(PageSinks.criuImages(plain), CONTEXT, TestChunks.stream(runs, pool));
        write(CompressedSinks.criuImages(packed, CompressionOptions.of(Codec.lz4(), pool).withFramePages(16),
                CriuImageOptions.defaults()), CONTEXT, TestChunks.stream(runs, pool));
        try (PageImages in = PageImages.open(packed); PageImages ref = PageImages.open(plain)) {
            PagemapImage pm = in.directory().pagemap(PagemapId.task(PageData.PID)).orElseThrow();
            PagemapImage refPm = ref.directory().pagemap(PagemapId.task(PageData.PID)).orElseThrow();
            // the biggest entry (the 300-page run) sits in the middle of the pages file
            PagemapImage.Entry big = pm.entries().stream().filter(PagemapImage.Entry::present)
                    .max(Comparator.comparingLong(PagemapImage.Entry::nrPages)).orElseThrow();
            assertTrue(big.pagesOffset() > 0 && big.nrPages() >= 300, big.toString());
            assertTrue(in.isCompressed(pm));
            assertFalse(ref.isCompressed(refPm));
            CompressedPagesReader reader = in.compressedReader(pm).orElseThrow();
            ByteBuffer three = in.readPages(pm, big, 150, 3);
            assertEquals(ref.readPages(refPm, refPm.entries().get(big.index()), 150, 3), three);
            // 3 pages span at most 2 frames of 16 pages; the file has many more
            assertTrue(reader.framesDecoded() <= 2, "decoded " + reader.framesDecoded());
            assertTrue(reader.frameCount() > 20, "frames " + reader.frameCount());
            // the whole entry
            assertEquals(ref.readPages(refPm, refPm.entries().get(big.index())), in.readPages(pm, big));
            assertEquals(Optional.empty(), ref.compressedReader(refPm));
        }
    }

    @Test
    void aDamagedFrameFailsTheUnpackWithFileFrameAndOffsetAndLeavesNoOutput() throws IOException {
        List<SourceRun> runs = PageData.runs(3);
        BufferPool pool = pool(8);
        Path packed = tmp.resolve("packed");
        write(CompressedSinks.criuImages(packed, Codec.zstd(1), pool), CONTEXT, TestChunks.stream(runs, pool));
        Path file = packed.resolve("pages-1.img.zst");
        long frameAt;
        try (CompressedPagesReader r = CompressedPagesReader.open(file)) {
            frameAt = r.frame(2).fileOffset();
        }
        CompressedPagesFileTest.flip(file, frameAt + CompressedPagesFormat.FRAME_HEADER_BYTES + 5);
        try (PageImages images = PageImages.open(packed)) {
            ImageFormatException v = assertThrows(ImageFormatException.class, images::verify);
            assertEquals("frame[2].payload_crc", v.field());
        }
        Path out = tmp.resolve("out");
        ImageFormatException e = assertThrows(ImageFormatException.class,
                () -> CompressedImages.unpack(packed, out, false));
        assertEquals(file, e.file());
        assertEquals(frameAt, e.offset());
        assertEquals("frame[2].payload_crc", e.field());
        assertFalse(PageData.exists(out));
        assertEquals(List.of(), PageData.partials(out));
    }

    @Test
    void aReaderErrorLeavesNoDirectoryAndEveryBufferReturned() throws IOException, InterruptedException {
        BufferPool pool = pool(6);
        Path dir = tmp.resolve("d");
        StepVerifier.create(CompressedSinks.criuImages(dir, Codec.zstd(3), pool)
                        .write(CONTEXT, TestChunks.stream(PageData.runs(5), pool, 7)))
                .expectErrorSatisfies(e -> assertTrue(e.getMessage().contains("failed on purpose after chunk=7"),
                        e.getMessage()))
                .verify(Duration.ofSeconds(30));
        TestChunks.await(() -> pool.leasedBuffers() == 0, "every buffer back in the pool");
        assertFalse(PageData.exists(dir));
        assertEquals(List.of(), PageData.partials(dir));
    }

    @Test
    void cancelLeavesNoDirectoryAndEveryBufferReturned() throws IOException, InterruptedException {
        BufferPool pool = pool(6);
        Path dir = tmp.resolve("d");
        CountDownLatch stall = new CountDownLatch(1);
        ExecutorService disk = Executors.newSingleThreadExecutor();
        try {
            Scheduler writes = Schedulers.fromExecutorService(disk);
            AtomicInteger read = new AtomicInteger();
            Disposable d = CompressedSinks.criuImages(dir, CompressionOptions.of(Codec.zstd(3), pool),
                            CriuImageOptions.defaults().withScheduler(writes))
                    .write(CONTEXT, TestChunks.stream(PageData.runs(5), pool).doOnNext(c -> read.incrementAndGet()))
                    .subscribe();
            TestChunks.await(() -> read.get() > 0, "reading under way");
            disk.submit(() -> {
                stall.await(); // writes queue up behind this
                return null;
            });
            TestChunks.await(() -> pool.leasedBuffers() >= 2, "compressed output waiting for the disk");
            d.dispose();
            stall.countDown();
            TestChunks.await(() -> pool.leasedBuffers() == 0, "every buffer back in the pool after cancel");
            TestChunks.await(() -> noPartials(dir), "temporary directory deleted");
            assertFalse(PageData.exists(dir));
        } finally {
            stall.countDown();
            disk.shutdownNow();
        }
    }

    private static boolean noPartials(Path dir) {
        try {
            return PageData.partials(dir).isEmpty();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @Test
    void aStalledDiskStopsTheReaderWithinTheBudgetAndTheDumpCompletesAfterwards()
            throws IOException, InterruptedException {
        List<SourceRun> runs = PageData.runs(9);
        int capacity = 4;
        BufferPool pool = pool(capacity);
        Path dir = tmp.resolve("d");
        CountDownLatch stall = new CountDownLatch(1);
        ExecutorService disk = Executors.newSingleThreadExecutor();
        AtomicInteger read = new AtomicInteger();
        try {
            Scheduler writes = Schedulers.fromExecutorService(disk);
            Flux<PageChunk> chunks = TestChunks.stream(runs, pool).doOnNext(c -> read.incrementAndGet());
            var result = CompressedSinks.criuImages(dir, CompressionOptions.of(Codec.zstd(1), pool)
                                    .withConcurrency(capacity - 1), CriuImageOptions.defaults().withScheduler(writes))
                    .write(CONTEXT, chunks)
                    .toFuture();
            TestChunks.await(() -> read.get() > 0, "reading under way");
            disk.submit(() -> {
                stall.await(); // from now on the disk takes nothing until released
                return null;
            });
            int before = read.get();
            // wait until reading has stopped (the pool is full of compressed output nobody writes)
            long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
            int last = -1;
            while (read.get() != last || pool.leasedBuffers() < 2) {
                assertTrue(System.nanoTime() < deadline, "reading did not stop: read=" + read.get() + " " + pool);
                last = read.get();
                Thread.sleep(100);
            }
            // nothing is written any more, so no compressed chunk is released: each chunk read
            // since holds a pool buffer (as input or as its compressed output) and reading stops
            // within the budget (plus the one chunk the disk may have been writing at the stall)
            assertTrue(read.get() - before <= capacity + 1, "chunks read while the disk is stalled: "
                    + (read.get() - before));
            assertTrue(pool.leasedBuffers() <= capacity);
            assertTrue(pool.allocatedBuffers() <= capacity);
            assertFalse(result.isDone());
            stall.countDown();
            SinkResult r = result.join();
            assertEquals(PageData.presentPages(runs), r.pages());
            assertTrue(read.get() > 3 * capacity, "all chunks read afterwards: " + read.get());
            assertTrue(pool.peakLeasedBuffers() <= capacity);
            TestChunks.await(() -> pool.leasedBuffers() == 0, "every buffer back in the pool");
            Path plain = tmp.resolve("plain");
            write(PageSinks.criuImages(plain), CONTEXT, TestChunks.stream(runs, pool));
            CompressedImages.unpack(dir, tmp.resolve("out"), false);
            PageData.assertSameTree(plain, tmp.resolve("out"));
        } finally {
            stall.countDown();
            disk.shutdownNow();
        }
    }

    @Test
    void refusesCodecNoneAndAPoolTooSmallForCompression() {
        BufferPool one = BufferPool.create(DataSize.ofKibibytes(128), DataSize.ofKibibytes(128));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> CompressedSinks.criuImages(tmp.resolve("x"), Codec.none(), pool(4)));
        assertTrue(e.getMessage().contains("codec=none"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> CompressionOptions.of(Codec.lz4(), one));
        assertTrue(e.getMessage().contains("at least 2 chunks") && e.getMessage().contains("capacity=1"),
                e.getMessage());
        e = assertThrows(IllegalArgumentException.class,
                () -> CompressionOptions.of(Codec.lz4(), pool(4)).withConcurrency(4));
        assertTrue(e.getMessage().contains("concurrency=4") && e.getMessage().contains("capacity=4"), e.getMessage());
    }

    @Test
    void withoutAPoolTheSinkFailsBeforeReadingAndSaysWhatToDo() throws InterruptedException {
        BufferPool pool = pool(4);
        Path dir = tmp.resolve("d");
        AtomicInteger read = new AtomicInteger();
        StepVerifier.create(CompressedSinks.criuImages(dir, Codec.lz4())
                        .write(CONTEXT, TestChunks.stream(PageData.runs(1), pool).doOnNext(c -> read.incrementAndGet())))
                .expectErrorSatisfies(e -> assertTrue(e.getMessage().contains("withPool"), e.getMessage()))
                .verify(Duration.ofSeconds(10));
        assertEquals(0, read.get());
        assertFalse(Files.exists(dir));
        // with the pool in the context, the same sink works
        SinkResult r = CompressedSinks.criuImages(dir, Codec.lz4())
                .write(CONTEXT, TestChunks.stream(PageData.runs(1), pool))
                .contextWrite(reactor.util.context.Context.of(CompressionOptions.POOL_CONTEXT_KEY, pool))
                .block(Duration.ofSeconds(30));
        assertEquals(PageData.presentPages(PageData.runs(1)), r.pages());
        TestChunks.await(() -> pool.leasedBuffers() == 0, "every buffer back in the pool");
    }

    @Test
    void unpackRefusesAnOccupiedOutputAndAMissingPagesFile() throws IOException {
        BufferPool pool = pool(4);
        Path packed = tmp.resolve("packed");
        write(CompressedSinks.criuImages(packed, Codec.gzip(1), pool), CONTEXT,
                TestChunks.stream(PageData.runs(2), pool));
        Path out = tmp.resolve("out");
        Files.createDirectories(out);
        Files.writeString(out.resolve("keep"), "x");
        Exception e = assertThrows(io.pageflux.sink.criu.ImageWriteException.class,
                () -> CompressedImages.unpack(packed, out, false));
        assertTrue(e.getMessage().contains("not empty"), e.getMessage());
        assertArrayEquals("x".getBytes(), Files.readAllBytes(out.resolve("keep")));
        Files.delete(packed.resolve("pages-2.img.gz"));
        ImageFormatException f = assertThrows(ImageFormatException.class,
                () -> CompressedImages.unpack(packed, tmp.resolve("out2"), false));
        assertTrue(f.getMessage().contains("pages_id=2") && f.getMessage().contains("missing"), f.getMessage());
        assertFalse(PageData.exists(tmp.resolve("out2")));
    }
}
