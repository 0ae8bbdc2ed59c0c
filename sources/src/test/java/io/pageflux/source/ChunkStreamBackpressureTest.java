package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.testing.InjectedFaultException;
import io.pageflux.source.testing.SimulatedProcess;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.test.StepVerifier;
import reactor.test.scheduler.VirtualTimeScheduler;

/**
 * The budget holds whatever the consumer does: a slow, greedy consumer never gets more than the
 * pool's buffers, and cancel, a failing consumer or a failing source leave zero leased buffers.
 * Runs on a simulated process in virtual time.
 */
class ChunkStreamBackpressureTest {

    private static final long BASE = 0x7f00_0000_0000L;
    private static final DataSize CHUNK = DataSize.ofMebibytes(1);

    private static ReadOptions options(BufferPool pool, VirtualTimeScheduler vts) {
        return ReadOptions.of(pool).withPolicy(SimulatedProcess.dumpEveryRegion()).withScheduler(vts);
    }

    @Test
    void aSlowGreedyConsumerNeverGetsMoreThanTheBudget() {
        // 64 chunks; the consumer asks for 256 at once and holds each for a second
        SimulatedProcess process = SimulatedProcess.builder().seed(3)
                .region(BASE, DataSize.ofMebibytes(64), 1.0)
                .readRate(DataSize.ofGibibytes(1))
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(4), CHUNK);
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        List<PoolSample> samples = new ArrayList<>();
        Disposable sampling = pool.samples(vts).subscribe(samples::add);
        AtomicLong goodChunks = new AtomicLong();
        AtomicLong doneAt = new AtomicLong();

        Mono<Void> dump = process.pages(options(pool, vts))
                .flatMap(c -> Mono.delay(Duration.ofSeconds(1), vts).doFinally(s -> {
                    if (process.contentMatches(c)) {
                        goodChunks.incrementAndGet();
                    }
                    c.release();
                }), 256)
                .doOnDiscard(PageChunk.class, PageChunk::release)
                .then()
                .doOnSuccess(v -> doneAt.set(vts.now(TimeUnit.MILLISECONDS)));
        StepVerifier.withVirtualTime(() -> dump, () -> vts, Long.MAX_VALUE)
                .thenAwait(Duration.ofSeconds(60))
                .verifyComplete();
        sampling.dispose();

        assertEquals(64, goodChunks.get(), "every chunk arrived with the right bytes");
        assertEquals(4, pool.peakLeasedBuffers(), "the pool, not the consumer's demand, bounds the chunks");
        assertTrue(pool.waits() > 0, "the reader had demand but waited for buffers");
        assertEquals(4, samples.stream().mapToInt(PoolSample::leasedBuffers).max().orElseThrow());
        assertTrue(samples.stream().allMatch(s -> s.leasedBytes() <= pool.budget().bytes()));
        assertEquals(128, samples.stream().filter(s -> s.event() != PoolSample.Event.SNAPSHOT
                && s.event() != PoolSample.Event.WAITED).count(), "64 leases and 64 releases");
        // four at a time, one second each: 16 s, plus the reads (1 MiB at 1 GiB/s, ~1 ms) they wait for
        assertTrue(doneAt.get() >= 16_000 && doneAt.get() <= 16_000 + 64, "done at " + doneAt.get() + " ms");
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void cancellingMidStreamReleasesChunksQueuedAndBeingRead() {
        SimulatedProcess process = SimulatedProcess.builder().fillPages(false)
                .region(BASE, DataSize.ofMebibytes(64), 1.0)
                .readRate(DataSize.ofMebibytes(10))
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(4), CHUNK);
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        DumpStats stats = new DumpStats();
        // up to two chunks queued in concatMap, one waiting out its second, one being read
        Flux<PageChunk> slow = process.pages(options(pool, vts).withStats(stats))
                .concatMap(c -> Mono.just(c).delayElement(Duration.ofSeconds(1), vts), 2)
                .doOnDiscard(PageChunk.class, PageChunk::release);
        StepVerifier.withVirtualTime(() -> slow, () -> vts, Long.MAX_VALUE)
                .thenAwait(Duration.ofMillis(2150))
                .assertNext(PageChunk::release)
                .assertNext(PageChunk::release)
                .then(() -> assertTrue(pool.leasedBuffers() >= 2, "chunks in flight: " + pool.leasedBuffers()))
                .thenCancel()
                .verifyThenAssertThat()
                .hasDiscardedElementsMatching(d -> !d.isEmpty()
                        && d.stream().allMatch(o -> o instanceof PageChunk c && c.isReleased()));
        assertEquals(0, pool.leasedBuffers());
        long readAtCancel = stats.chunksRead();
        vts.advanceTimeBy(Duration.ofSeconds(30));
        assertEquals(readAtCancel, stats.chunksRead(), "nothing is read after cancel");
        assertTrue(readAtCancel < 64);
    }

    @Test
    void aFailingSourceReleasesWhatTheConsumerStillHolds() {
        SimulatedProcess process = SimulatedProcess.builder().pid(999).fillPages(false)
                .region(BASE, DataSize.ofMebibytes(64), 1.0)
                .readRate(DataSize.ofMebibytes(100))
                .readErrorAt(BASE + DataSize.ofMebibytes(10).bytes())
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(4), CHUNK);
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        AtomicLong consumed = new AtomicLong();
        Flux<Long> slow = process.pages(options(pool, vts))
                .flatMap(c -> Mono.delay(Duration.ofMillis(50), vts).map(t -> c.sequence())
                        .doFinally(s -> c.release()), 4)
                .doOnNext(s -> consumed.incrementAndGet())
                .doOnDiscard(PageChunk.class, PageChunk::release);
        StepVerifier.withVirtualTime(() -> slow, () -> vts, Long.MAX_VALUE)
                .thenAwait(Duration.ofSeconds(5))
                .thenConsumeWhile(s -> true)
                .expectErrorSatisfies(e -> {
                    assertTrue(e instanceof InjectedFaultException, e.toString());
                    assertTrue(e.getMessage().contains("pid=999 address=0x7f0000a00000"), e.getMessage());
                })
                .verify();
        assertTrue(consumed.get() < 10, "chunk 10 holds the bad address; consumed " + consumed.get());
        assertEquals(0, pool.leasedBuffers());
    }
}
