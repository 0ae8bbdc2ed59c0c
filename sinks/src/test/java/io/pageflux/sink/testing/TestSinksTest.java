package io.pageflux.sink.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.SinkResult;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.DumpStats;
import io.pageflux.source.PageChunk;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.testing.InjectedFaultException;
import io.pageflux.source.testing.SimulatedProcess;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Mono;
import reactor.test.StepVerifier;
import reactor.test.scheduler.VirtualTimeScheduler;

/** The sink decorators on their own: timing in virtual time, failures, and that every buffer comes back. */
class TestSinksTest {

    static final long BASE = 0x7f00_0000_0000L;
    static final long SECOND = 1_000_000_000L;

    static SimulatedProcess process(DataSize size) {
        return SimulatedProcess.builder().seed(8).region(BASE, size, 1.0).build();
    }

    static ReadOptions options(BufferPool pool, VirtualTimeScheduler vts, DumpStats stats) {
        return ReadOptions.of(pool).withPolicy(SimulatedProcess.dumpEveryRegion()).withScheduler(vts).withStats(stats);
    }

    static Mono<SinkResult> dump(PageSink sink, SimulatedProcess process, ReadOptions options) {
        return sink.write(DumpContext.of(process.pid(), process.regions(), 0), process.pages(options));
    }

    @Test
    void aThrottledSinkTakesEachChunkAtTheRate() {
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        SimulatedProcess process = process(DataSize.ofMebibytes(10));
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(4), DataSize.ofMebibytes(1));
        RecordingSink recording = new RecordingSink("r", vts, process);
        PageSink sink = TestSinks.throttled(recording, DataSize.ofMebibytes(2), vts);
        assertEquals("throttled(2 MiB/s) recording:r", sink.describe());

        StepVerifier.withVirtualTime(() -> dump(sink, process, options(pool, vts, new DumpStats())), () -> vts, 1)
                .expectSubscription()
                .expectNoEvent(Duration.ofMillis(4999))
                .thenAwait(Duration.ofMillis(1))
                .assertNext(r -> {
                    assertEquals(2560, r.pages());
                    assertEquals(DataSize.ofMebibytes(10).bytes(), r.bytesWritten());
                })
                .verifyComplete();
        // 1 MiB at 2 MiB/s: one chunk every half second, in order, each with its bytes intact
        List<Long> times = recording.arrivals.stream().map(RecordingSink.Arrival::atNanos).toList();
        for (int i = 0; i < 10; i++) {
            assertEquals((i + 1) * SECOND / 2, times.get(i), "arrival of chunk " + i);
            assertEquals(i, recording.arrivals.get(i).sequence());
        }
        assertEquals(0, recording.badChunks.get());
        assertTrue(pool.peakLeasedBuffers() <= 3, "the throttle holds about two chunks: " + pool.peakLeasedBuffers());
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void theThrottleLosesNoTimeToRounding() {
        // 4096 B at 12288 B/s = 1/3 s each: 333333333 + 333333333 + 333333334 ns, exactly one second
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        SimulatedProcess process = process(DataSize.ofKibibytes(12));
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(8), DataSize.ofKibibytes(4));
        RecordingSink recording = new RecordingSink("r", vts, null);
        PageSink sink = TestSinks.throttled(recording, DataSize.ofBytes(12288), vts);
        StepVerifier.withVirtualTime(() -> dump(sink, process, options(pool, vts, new DumpStats())), () -> vts, 1)
                .expectSubscription()
                .expectNoEvent(Duration.ofNanos(SECOND - 1))
                .thenAwait(Duration.ofNanos(1))
                .expectNextCount(1)
                .verifyComplete();
        assertEquals(List.of(333_333_333L, 666_666_666L, SECOND),
                recording.arrivals.stream().map(RecordingSink.Arrival::atNanos).toList());
    }

    @Test
    void aStallDelaysCompletionByTheStallWhileTheSourceWaits() {
        SimulatedProcess process = process(DataSize.ofMebibytes(16));
        long plain = finishNanos(process, vts -> TestSinks.throttled(PageSinks.nullSink(), DataSize.ofMebibytes(8), vts),
                null);
        long[] duringStall = new long[4];
        long stalled = finishNanos(process, vts -> TestSinks.stalled(
                TestSinks.throttled(PageSinks.nullSink(), DataSize.ofMebibytes(8), vts), 5, Duration.ofSeconds(30), vts),
                duringStall);
        assertEquals(2 * SECOND, plain, "16 MiB at 8 MiB/s");
        // the throttle keeps writing the chunks it already has during the first part of the stall:
        // the stall adds its duration less at most one chunk's write time (1 MiB at 8 MiB/s)
        long added = stalled - plain;
        assertTrue(added >= 30 * SECOND - SECOND / 8 && added <= 30 * SECOND, "added " + added + " ns");
        assertEquals(duringStall[0], duringStall[2], "no read between 10 s and 25 s: the source waits for demand");
        assertTrue(duringStall[0] < 16, "chunks read before the stall ended: " + duringStall[0]);
        assertTrue(duringStall[1] <= 2 && duringStall[3] <= 2,
                "the stalled chunk and at most one queued behind it are leased: " + duringStall[1]);
    }

    /**
     * Virtual nanoseconds until the sink's result; optionally chunks read and buffers leased at
     * 10 s and at 25 s into {@code probe[0..3]}.
     */
    private static long finishNanos(SimulatedProcess process, java.util.function.Function<VirtualTimeScheduler, PageSink> sink,
                                    long[] probe) {
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(4), DataSize.ofMebibytes(1));
        DumpStats stats = new DumpStats();
        AtomicLong doneAt = new AtomicLong();
        StepVerifier.withVirtualTime(() -> dump(sink.apply(vts), process, options(pool, vts, stats))
                                .doOnSuccess(r -> doneAt.set(vts.now(TimeUnit.NANOSECONDS))), () -> vts, 1)
                .expectSubscription()
                .thenAwait(Duration.ofSeconds(10))
                .then(() -> record(probe, 0, stats, pool))
                .thenAwait(Duration.ofSeconds(15))
                .then(() -> record(probe, 2, stats, pool))
                .thenAwait(Duration.ofSeconds(60))
                .assertNext(r -> assertEquals(4096, r.pages()))
                .verifyComplete();
        assertEquals(0, pool.leasedBuffers());
        return doneAt.get();
    }

    private static void record(long[] probe, int at, DumpStats stats, BufferPool pool) {
        if (probe != null) {
            probe[at] = stats.chunksRead();
            probe[at + 1] = pool.leasedBuffers();
        }
    }

    @Test
    void aFailingSinkFailsTheDumpCancelsTheSourceAndFreesThePool() {
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        SimulatedProcess process = process(DataSize.ofMebibytes(64));
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(4), DataSize.ofMebibytes(1));
        DumpStats stats = new DumpStats();
        RecordingSink recording = new RecordingSink("r", vts, process);
        PageSink sink = TestSinks.failingAfter(TestSinks.throttled(recording, DataSize.ofMebibytes(4), vts), 3);
        StepVerifier.withVirtualTime(() -> dump(sink, process, options(pool, vts, stats)), () -> vts, 1)
                .expectSubscription()
                .thenAwait(Duration.ofSeconds(5))
                .expectErrorSatisfies(e -> {
                    assertTrue(e instanceof InjectedFaultException, e.toString());
                    assertEquals("sink failed: sink='failing(after 3 chunks) throttled(4 MiB/s) recording:r' chunks=3 "
                            + "chunk=3 (injected fault: TestSinks.failingAfter)", e.getMessage());
                })
                .verify();
        assertTrue(recording.arrivals.size() <= 3, "the delegate saw at most the chunks before the failure");
        assertTrue(stats.chunksRead() <= 3 + 1 + pool.capacity(), "the source stopped: read " + stats.chunksRead());
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void cancellingAThrottledDumpReleasesTheChunksItHolds() {
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        SimulatedProcess process = process(DataSize.ofMebibytes(64));
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(8), DataSize.ofMebibytes(1));
        PageSink sink = TestSinks.throttled(PageSinks.nullSink(), DataSize.ofMebibytes(1), vts);
        StepVerifier.withVirtualTime(() -> dump(sink, process, options(pool, vts, new DumpStats())), () -> vts, 1)
                .expectSubscription()
                .thenAwait(Duration.ofMillis(3500))
                .then(() -> assertTrue(pool.leasedBuffers() >= 1, "the throttle holds a chunk"))
                .thenCancel()
                .verifyThenAssertThat()
                .hasDiscardedElementsMatching(d -> !d.isEmpty()
                        && d.stream().allMatch(o -> o instanceof PageChunk c && c.isReleased()));
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void rejectsNonsense() {
        PageSink nul = PageSinks.nullSink();
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        assertThrows(IllegalArgumentException.class, () -> TestSinks.throttled(nul, DataSize.ofBytes(0), vts));
        assertThrows(IllegalArgumentException.class, () -> TestSinks.stalled(nul, -1, Duration.ofSeconds(1), vts));
        assertThrows(IllegalArgumentException.class, () -> TestSinks.failingAfter(nul, -1));
    }
}
