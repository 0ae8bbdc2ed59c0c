package io.pageflux.sink;

import io.pageflux.sink.criu.Vectors.SourceRun;
import io.pageflux.source.BufferPool;
import io.pageflux.source.ChunkReader;
import io.pageflux.source.ChunkStream;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageRun;
import io.pageflux.source.PooledBuffer;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.BooleanSupplier;
import reactor.core.publisher.Flux;
import reactor.core.scheduler.Schedulers;

/** Demand-driven chunk streams over given runs, through the real {@link ChunkStream} and a pool. */
public final class TestChunks {

    private TestChunks() {
    }

    /**
     * Packs the runs into chunks of the pool's size (a run is split across chunks when it does not
     * fit), read on demand only; after {@code failAfter} chunks the reader throws instead.
     */
    public static Flux<PageChunk> stream(List<SourceRun> runs, BufferPool pool, int failAfter) {
        return ChunkStream.from(() -> new RunsReader(runs, failAfter), pool, Schedulers.boundedElastic());
    }

    public static Flux<PageChunk> stream(List<SourceRun> runs, BufferPool pool) {
        return stream(runs, pool, Integer.MAX_VALUE);
    }

    /** Fills buffers with the runs' bytes in order. */
    static final class RunsReader implements ChunkReader {
        private final List<SourceRun> runs;
        private final int failAfter;
        private int index;
        private long pageInRun;
        private long sequence;

        RunsReader(List<SourceRun> runs, int failAfter) {
            this.runs = runs;
            this.failAfter = failAfter;
        }

        @Override
        public PageChunk next(PooledBuffer buffer) {
            if (index == runs.size()) {
                return null;
            }
            if (sequence == failAfter) {
                throw new IllegalStateException("reader failed on purpose after chunk=" + failAfter);
            }
            ByteBuffer b = buffer.buffer();
            List<PageRun> out = new ArrayList<>();
            while (index < runs.size() && b.remaining() >= PageRun.PAGE_SIZE) {
                SourceRun s = runs.get(index);
                long n = Math.min(s.run().pages() - pageInRun, b.remaining() / PageRun.PAGE_SIZE);
                out.add(s.run().slice(pageInRun, n));
                b.put(s.bytes(), (int) (pageInRun * PageRun.PAGE_SIZE), (int) (n * PageRun.PAGE_SIZE));
                pageInRun += n;
                if (pageInRun == s.run().pages()) {
                    index++;
                    pageInRun = 0;
                }
            }
            return PageChunk.of(buffer, b.position(), out, sequence++);
        }
    }

    /** {@link #await} for lambdas that cannot throw checked exceptions. */
    public static void awaitUnchecked(BooleanSupplier condition, String what) {
        try {
            await(condition, what);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted waiting for: " + what, e);
        }
    }

    /** Waits (up to 10 s) for a condition another thread makes true; fails with {@code what} otherwise. */
    public static void await(BooleanSupplier condition, String what) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting for: " + what);
            }
            Thread.sleep(2);
        }
    }
}
