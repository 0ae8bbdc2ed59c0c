package io.pageflux.bench;

import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.PooledBuffer;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The per-chunk bookkeeping cost: acquiring a pooled buffer, wrapping it in a chunk, fanning it out
 * to two holders and releasing it. Compared with the ~0.5 ms a 4 MiB process_vm_readv takes, this
 * should be noise.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class BufferPoolBenchmark {

    private BufferPool pool;
    private List<PageRun> runs;

    @Setup
    public void setUp() {
        pool = BufferPool.create(DataSize.ofMebibytes(64), DataSize.ofMebibytes(4));
        runs = List.of(new PageRun(0x7f0000000000L, 1024, PagemapId.task(1), 0x7f0000000000L, 6));
    }

    @Benchmark
    public void acquireRelease() {
        PooledBuffer buffer = pool.tryAcquire();
        buffer.release();
    }

    @Benchmark
    @Threads(2)
    public void acquireReleaseContended() {
        PooledBuffer buffer = pool.tryAcquire();
        if (buffer != null) {
            buffer.release();
        }
    }

    @Benchmark
    public void chunkFanOutToTwo() {
        PageChunk chunk = PageChunk.of(pool.tryAcquire(), 4 << 20, runs, 0);
        PageChunk second = chunk.retain();
        chunk.release();
        second.release();
    }
}
