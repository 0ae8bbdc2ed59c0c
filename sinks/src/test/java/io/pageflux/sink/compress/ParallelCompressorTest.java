package io.pageflux.sink.compress;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.TestChunks;
import io.pageflux.sink.criu.Vectors.SourceRun;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;
import reactor.test.StepVerifier;

class ParallelCompressorTest {

    private static final int PAGE = PageRun.PAGE_SIZE;

    /** 120 runs of 4 pages, each with its own contents; one run per 16 KiB chunk. */
    private static List<SourceRun> runs() {
        List<SourceRun> out = new ArrayList<>();
        for (int i = 0; i < 120; i++) {
            long address = 0x10_0000_0000L + i * 0x10_0000L;
            byte[] bytes = i % 5 == 4 ? PageData.random(i, 4) : PageData.text(i, 4);
            out.add(new SourceRun(new PageRun(address, 4, PagemapId.task(1), address, PageFlags.PE_PRESENT), bytes));
        }
        return out;
    }

    /** Decompresses every frame of {@code c} back into the raw bytes. */
    private static byte[] rawOf(CompressedChunk c) {
        ByteBuffer raw = ByteBuffer.allocate((int) c.rawBytes());
        try (Frames frames = new Frames(Codec.none())) {
            for (CompressedChunk.Segment s : c.segments()) {
                for (CompressedChunk.Frame f : s.frames()) {
                    frames.decode(f.header(), c.payload(f), raw.slice());
                    raw.position(raw.position() + f.header().rawLength());
                }
            }
        }
        return raw.array();
    }

    /**
     * Delays the n-th compression task by 0, 30 or 10 ms in turn, so that later chunks finish
     * before earlier ones; records the order in which tasks were submitted and ran.
     */
    private static final class DelayingScheduler implements Scheduler {
        final Scheduler delegate = Schedulers.newParallel("delaying", 4);
        final AtomicInteger submitted = new AtomicInteger();
        final List<Integer> ran = Collections.synchronizedList(new ArrayList<>());

        @Override
        public Disposable schedule(Runnable task) {
            int n = submitted.getAndIncrement();
            long delay = new long[] {0, 30, 10}[n % 3];
            return delegate.schedule(() -> {
                ran.add(n);
                task.run();
            }, delay, TimeUnit.MILLISECONDS);
        }

        @Override
        public Worker createWorker() {
            return delegate.createWorker();
        }

        @Override
        public void dispose() {
            delegate.dispose();
        }
    }

    @Test
    void chunksFinishingOutOfOrderAreEmittedInOrderWithTheirOwnBytes() throws InterruptedException {
        List<SourceRun> runs = runs();
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(16 * 8), DataSize.ofKibibytes(16));
        DelayingScheduler slow = new DelayingScheduler();
        try {
            CompressionOptions options = CompressionOptions.of(Codec.zstd(3), pool).withConcurrency(4)
                    .withScheduler(slow);
            List<Long> sequences = new ArrayList<>();
            AtomicInteger index = new AtomicInteger();
            StepVerifier.create(ParallelCompressor.compress(TestChunks.stream(runs, pool), options))
                    .thenConsumeWhile(c -> true, c -> {
                        try {
                            int i = index.getAndIncrement();
                            sequences.add(c.sequence());
                            assertEquals(runs.get(i).run(), c.segments().get(0).runs().get(0));
                            assertArrayEquals(runs.get(i).bytes(), rawOf(c), "bytes of chunk " + i);
                        } finally {
                            c.release();
                        }
                    })
                    .expectComplete()
                    .verify(Duration.ofSeconds(60));
            List<Long> expected = new ArrayList<>();
            for (long i = 0; i < runs.size(); i++) {
                expected.add(i);
            }
            assertEquals(expected, sequences);
            // the delays really made later tasks run before earlier ones
            int inversions = 0;
            synchronized (slow.ran) {
                for (int i = 1; i < slow.ran.size(); i++) {
                    if (slow.ran.get(i) < slow.ran.get(i - 1)) {
                        inversions++;
                    }
                }
            }
            assertTrue(inversions > 0, "no task ran before an earlier one: " + slow.ran);
            TestChunks.await(() -> pool.leasedBuffers() == 0, "every buffer back in the pool");
            assertTrue(pool.peakLeasedBuffers() <= pool.capacity());
        } finally {
            slow.dispose();
        }
    }

    @Test
    void cancellingAtAnyPointReturnsEveryBuffer() throws InterruptedException {
        List<SourceRun> runs = runs();
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(16 * 6), DataSize.ofKibibytes(16));
        DelayingScheduler slow = new DelayingScheduler();
        try {
            CompressionOptions options = CompressionOptions.of(Codec.lz4(), pool).withConcurrency(3)
                    .withScheduler(slow);
            for (int take = 0; take < 12; take++) {
                StepVerifier.create(ParallelCompressor.compress(TestChunks.stream(runs, pool), options).take(take))
                        .thenConsumeWhile(c -> true, CompressedChunk::release)
                        .expectComplete()
                        .verify(Duration.ofSeconds(30));
                int t = take;
                TestChunks.await(() -> pool.leasedBuffers() == 0, "buffers back after take(" + t + ") " + pool);
            }
        } finally {
            slow.dispose();
        }
    }

    @Test
    void anUpstreamErrorIsPassedOnAndEveryBufferReturned() throws InterruptedException {
        List<SourceRun> runs = runs();
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(16 * 6), DataSize.ofKibibytes(16));
        CompressionOptions options = CompressionOptions.of(Codec.gzip(1), pool).withConcurrency(3);
        StepVerifier.create(ParallelCompressor.compress(TestChunks.stream(runs, pool, 20), options))
                .thenConsumeWhile(c -> true, CompressedChunk::release)
                .expectErrorMessage("reader failed on purpose after chunk=20")
                .verify(Duration.ofSeconds(30));
        TestChunks.await(() -> pool.leasedBuffers() == 0, "every buffer back in the pool");
    }

    @Test
    void aChunkBiggerThanTheOutputBuffersIsAnErrorNamingBothSizes() throws InterruptedException {
        BufferPool big = BufferPool.create(DataSize.ofKibibytes(64 * 2), DataSize.ofKibibytes(64));
        BufferPool small = BufferPool.create(DataSize.ofKibibytes(16 * 4), DataSize.ofKibibytes(16));
        List<SourceRun> runs = List.of(new SourceRun(new PageRun(0x1000_0000L, 16, PagemapId.task(1), 0x1000_0000L,
                PageFlags.PE_PRESENT), PageData.text(1, 16)));
        StepVerifier.create(ParallelCompressor.compress(TestChunks.stream(runs, big),
                        CompressionOptions.of(Codec.zstd(1), small)))
                .expectErrorSatisfies(e -> assertTrue(e.getMessage().contains("bytes=65536")
                        && e.getMessage().contains("hold 16384"), e.getMessage()))
                .verify(Duration.ofSeconds(10));
        TestChunks.await(() -> big.leasedBuffers() == 0 && small.leasedBuffers() == 0, "buffers back");
    }

    @Test
    void framesAreCutAtPagemapChangesHolesAndTheFrameSize() {
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(64 * 2), DataSize.ofKibibytes(64));
        // one chunk: task run of 5 pages, a 2-page hole, 6 more task pages, then 3 shmem pages
        var lease = pool.tryAcquire();
        byte[] data = PageData.text(5, 16);
        lease.buffer().put(data);
        List<PageRun> chunkRuns = List.of(
                new PageRun(0x1000_0000L, 5, PagemapId.task(1), 0x1000_0000L, PageFlags.PE_PRESENT),
                new PageRun(0x1000_5000L, 2, PagemapId.task(1), 0x1000_5000L, PageFlags.PE_PARENT),
                new PageRun(0x1000_7000L, 6, PagemapId.task(1), 0x1000_7000L, PageFlags.PE_PRESENT),
                new PageRun(0x2000_0000L, 3, PagemapId.shmem(9), 0, PageFlags.PE_PRESENT));
        PageChunk chunk = PageChunk.of(lease, 16 * PAGE, chunkRuns, 0);
        CompressedChunk c;
        try (Frames frames = new Frames(Codec.zstd(1))) {
            c = ParallelCompressor.compressChunk(chunk, pool.tryAcquire(), frames, 4 * PAGE);
        }
        chunk.release();
        try {
            assertEquals(2, c.segments().size());
            CompressedChunk.Segment task = c.segments().get(0);
            assertEquals(3, task.runs().size());
            // 5 pages -> 4 + 1; hole skipped; 6 pages -> 4 + 2
            assertEquals(List.of(4, 1, 4, 2), task.frames().stream().map(f -> f.header().rawLength() / PAGE).toList());
            assertEquals(List.of(3), c.segments().get(1).frames().stream()
                    .map(f -> f.header().rawLength() / PAGE).toList());
            byte[] raw = rawOf(c);
            byte[] expected = new byte[14 * PAGE];
            System.arraycopy(data, 0, expected, 0, 5 * PAGE);
            System.arraycopy(data, 7 * PAGE, expected, 5 * PAGE, 9 * PAGE);
            assertArrayEquals(expected, raw);
        } finally {
            c.release();
        }
        assertEquals(0, pool.leasedBuffers());
    }
}
