package io.pageflux.sink.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.PoolSample;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.testing.InjectedFaultException;
import io.pageflux.source.testing.SimulatedProcess;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.LongStream;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.test.StepVerifier;
import reactor.test.scheduler.VirtualTimeScheduler;

/** One dump into two sinks of different speeds through {@code PageSinks.tee}: the slow one sets the pace. */
class FanOutTest {

    @Test
    void theSlowSinkSetsThePaceAndTheBudgetHolds() {
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        SimulatedProcess process = SimulatedProcess.builder().seed(77)
                .region(0x7f00_0000_0000L, DataSize.ofMebibytes(128), 1.0)
                .readRate(DataSize.ofMebibytes(500))
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(32), DataSize.ofMebibytes(4));
        ReadOptions options = ReadOptions.of(pool).withPolicy(SimulatedProcess.dumpEveryRegion()).withScheduler(vts);
        RecordingSink fast = new RecordingSink("fast", vts, process);
        RecordingSink slow = new RecordingSink("slow", vts, process);
        PageSink tee = PageSinks.tee(TestSinks.throttled(fast, DataSize.ofMebibytes(20), vts),
                TestSinks.throttled(slow, DataSize.ofMebibytes(5), vts));
        List<PoolSample> samples = new ArrayList<>();
        Disposable sampling = pool.samples(vts).subscribe(samples::add);
        AtomicLong doneAt = new AtomicLong();

        StepVerifier.withVirtualTime(() -> tee.write(DumpContext.of(process.pid(), process.regions(), 0),
                                process.pages(options))
                        .doOnSuccess(r -> doneAt.set(vts.now(TimeUnit.NANOSECONDS))), () -> vts, 1)
                .expectSubscription()
                .thenAwait(Duration.ofSeconds(60))
                .assertNext(r -> {
                    assertEquals(32768, r.pages());
                    assertEquals(2 * DataSize.ofMebibytes(128).bytes(), r.bytesWritten(), "both sinks wrote it all");
                })
                .verifyComplete();
        sampling.dispose();

        List<Long> all = LongStream.range(0, 32).boxed().toList();
        assertEquals(all, fast.arrivals.stream().map(RecordingSink.Arrival::sequence).toList());
        assertEquals(all, slow.arrivals.stream().map(RecordingSink.Arrival::sequence).toList());
        assertEquals(0, fast.badChunks.get() + slow.badChunks.get(), "shared buffers carried the right bytes to both");
        // 128 MiB at 5 MiB/s = 25.6 s (the fast sink alone would be done at 6.4 s)
        long total = doneAt.get();
        assertTrue(Math.abs(total - 25_600_000_000L) <= 400_000_000L, "done at " + total + " ns");
        // the tee passes a chunk on only when both branches want one, and each throttle holds at most
        // two: the fast sink ends at most a few slow chunk-times (4 MiB at 5 MiB/s = 0.8 s) early
        long slowChunk = 800_000_000L;
        assertTrue(fast.lastArrivalNanos() >= total - 3 * slowChunk,
                "the fast sink could not run ahead of the slow one: its last chunk came at " + fast.lastArrivalNanos());
        assertTrue(samples.stream().allMatch(s -> s.leasedBuffers() <= pool.capacity()));
        assertTrue(pool.peakLeasedBuffers() <= pool.capacity());
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void aFailingBranchFailsTheFanOutAndFreesEverything() {
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        SimulatedProcess process = SimulatedProcess.builder().fillPages(false)
                .region(0x7f00_0000_0000L, DataSize.ofMebibytes(256), 1.0)
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(32), DataSize.ofMebibytes(4));
        ReadOptions options = ReadOptions.of(pool).withPolicy(SimulatedProcess.dumpEveryRegion()).withScheduler(vts);
        RecordingSink healthy = new RecordingSink("healthy", vts, null);
        PageSink tee = PageSinks.tee(TestSinks.throttled(healthy, DataSize.ofMebibytes(40), vts),
                TestSinks.failingAfter(TestSinks.throttled(PageSinks.nullSink(), DataSize.ofMebibytes(10), vts), 5));
        StepVerifier.withVirtualTime(() -> tee.write(DumpContext.of(process.pid(), process.regions(), 0),
                        process.pages(options)), () -> vts, 1)
                .expectSubscription()
                .thenAwait(Duration.ofSeconds(60))
                .expectErrorSatisfies(e -> {
                    assertTrue(e instanceof InjectedFaultException, e.toString());
                    assertTrue(e.getMessage().contains("chunks=5 chunk=5"), e.getMessage());
                })
                .verify();
        assertTrue(healthy.arrivals.size() < 64, "the healthy branch was cancelled: " + healthy.arrivals.size());
        assertEquals(0, pool.leasedBuffers());
    }
}
