package io.pageflux.sink.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.DumpStats;
import io.pageflux.source.PoolSample;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.testing.SimulatedProcess;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.test.StepVerifier;
import reactor.test.scheduler.VirtualTimeScheduler;

/** Big dumps in virtual time: they take the time the slowest stage dictates and stay within the budget. */
class VirtualTimeDumpTest {

    /** The README example. */
    @Test
    void sixtyFourGibibytesAt200MibPerSecondTake327SecondsWithinTheBudget() {
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        SimulatedProcess process = SimulatedProcess.builder()
                .seed(42)
                .region(0x7f00_0000_0000L, DataSize.ofGibibytes(64), 1.0)  // 64 GiB, every page present
                .fillPages(false)                                          // nobody checks the bytes: don't write them
                .readRate(DataSize.ofGibibytes(2))                         // the source is faster than the sink
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(64), DataSize.ofMebibytes(4));
        DumpStats stats = new DumpStats();
        ReadOptions options = ReadOptions.of(pool)   // CRIU's full-dump selection: the region is private anonymous
                .withScheduler(vts)
                .withStats(stats);
        PageSink sink = TestSinks.throttled(PageSinks.nullSink(), DataSize.ofMebibytes(200), vts);
        List<PoolSample> samples = new ArrayList<>();
        Disposable sampling = pool.samples(vts).subscribe(samples::add);

        // 64 GiB / 200 MiB/s = 327.68 s; allow one 4 MiB chunk (20 ms) either way
        StepVerifier.withVirtualTime(() -> sink.write(DumpContext.of(process.pid(), process.regions(), 0),
                        process.pages(options)), () -> vts, 1)
                .expectSubscription()
                .expectNoEvent(Duration.ofMillis(327_680 - 20))
                .thenAwait(Duration.ofMillis(40))
                .assertNext(result -> {
                    assertEquals(DataSize.ofGibibytes(64).bytes(), result.bytesWritten());
                    assertEquals(DataSize.ofGibibytes(64).bytes() / 4096, result.pages());
                })
                .verifyComplete();
        sampling.dispose();

        assertTrue(pool.peakLeasedBytes() <= pool.budget().bytes(), "peak " + pool.peakLeasedBytes());
        assertTrue(samples.stream().allMatch(s -> s.leasedBytes() <= DataSize.ofMebibytes(64).bytes()));
        assertEquals(16384, stats.chunksRead(), "64 GiB in 4 MiB chunks");
        assertEquals(2 * 16384, samples.stream().filter(s -> s.event() == PoolSample.Event.ACQUIRED
                || s.event() == PoolSample.Event.RELEASED).count(), "every lease and release was sampled");
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void aGreedyConsumerFillsTheBudgetButNeverExceedsItAndTheSinkStillSetsThePace() {
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        SimulatedProcess process = SimulatedProcess.builder().fillPages(false)
                .region(0x7f00_0000_0000L, DataSize.ofGibibytes(4), 1.0)
                .readRate(DataSize.ofGibibytes(2))
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(64), DataSize.ofMebibytes(4));
        ReadOptions options = ReadOptions.of(pool).withPolicy(SimulatedProcess.dumpEveryRegion()).withScheduler(vts);
        PageSink sink = TestSinks.throttled(PageSinks.nullSink(), DataSize.ofMebibytes(200), vts);
        AtomicLong doneAt = new AtomicLong();
        // publishOn with a prefetch of 256 asks for 1 GiB ahead; the 64 MiB pool says no
        StepVerifier.withVirtualTime(() -> sink.write(DumpContext.of(process.pid(), process.regions(), 0),
                                process.pages(options).publishOn(vts, 256))
                        .doOnSuccess(r -> doneAt.set(vts.now(TimeUnit.MILLISECONDS))), () -> vts, 1)
                .expectSubscription()
                .thenAwait(Duration.ofSeconds(30))
                .assertNext(result -> assertEquals(DataSize.ofGibibytes(4).bytes(), result.bytesWritten()))
                .verifyComplete();
        assertEquals(16, pool.peakLeasedBuffers(), "the greedy consumer got the whole budget, no more");
        assertTrue(pool.waits() > 0, "the reader waited for buffers");
        // 4 GiB / 200 MiB/s = 20.48 s, give or take one chunk
        assertTrue(Math.abs(doneAt.get() - 20_480) <= 20, "done at " + doneAt.get() + " ms");
        assertEquals(0, pool.leasedBuffers());
    }
}
