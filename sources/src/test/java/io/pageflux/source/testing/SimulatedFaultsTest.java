package io.pageflux.source.testing;

import static io.pageflux.source.testing.SimulatedProcessTest.BASE;
import static io.pageflux.source.testing.SimulatedProcessTest.PAGE;
import static io.pageflux.source.testing.SimulatedProcessTest.options;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.DumpStats;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageRun;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.ReadOptions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.test.StepVerifier;
import reactor.test.scheduler.VirtualTimeScheduler;

/** Injected faults and the read cost: what the consumer sees, what is counted, and that the pool is freed. */
class SimulatedFaultsTest {

    @Test
    void vanishedPagesAreCountedAndLeftOutWhileTheRestIsReadIntact() {
        // pages 3..5 and 15..17 vanish; the second stretch straddles the 16-page chunk boundary
        SimulatedProcess process = SimulatedProcess.builder().seed(11)
                .region(BASE, DataSize.ofKibibytes(128), 1.0)
                .vanish(BASE + 3 * PAGE, 3)
                .vanish(BASE + 15 * PAGE, 2)
                .vanish(BASE + 16 * PAGE, 2) // touches the previous range: merged
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(128), DataSize.ofKibibytes(64));
        DumpStats stats = new DumpStats();
        List<PageRun> runs = new ArrayList<>();
        List<Long> chunkPages = new ArrayList<>();
        StepVerifier.create(process.pages(options(pool).withStats(stats)))
                .thenConsumeWhile(c -> {
                    try {
                        assertTrue(process.contentMatches(c), "bytes of " + c);
                        runs.addAll(c.runs());
                        chunkPages.add(c.pages());
                    } finally {
                        c.release();
                    }
                    return true;
                })
                .verifyComplete();

        List<long[]> spans = runs.stream().map(r -> new long[] {(r.address() - BASE) / PAGE, r.pages()}).toList();
        // dense buffers: vanished pages take no room, so chunk 0 holds pages 0-2, 6-14, 18-21 (16 pages)
        assertEquals("[0+3, 6+9, 18+4, 22+10]", spans.stream().map(s -> s[0] + "+" + s[1]).toList().toString());
        assertEquals(List.of(16L, 10L), chunkPages);
        assertEquals(6, stats.pagesVanished());
        assertEquals(List.of(3L, 4L, 5L, 15L, 16L, 17L),
                stats.vanishedAddresses().stream().map(a -> (a - BASE) / PAGE).toList());
        assertEquals(32, stats.pagesPlanned(), "vanished pages were planned");
        assertEquals(26, stats.pagesRead());
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void aProcessExitingAfterSomeBytesFailsTheDumpAndFreesChunksStillInFlight() {
        // 64 KiB chunks read in 0.25 s each, each held 1 s by the consumer: when the exit is noticed
        // (the read after 256 KiB, at 1.25 s) chunks 1..3 are still being consumed
        SimulatedProcess process = SimulatedProcess.builder().pid(5150)
                .region(BASE, DataSize.ofMebibytes(4), 1.0)
                .readRate(DataSize.ofKibibytes(256))
                .exitAfter(DataSize.ofKibibytes(200))
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(256), DataSize.ofKibibytes(64));
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        Flux<Long> consumed = process.pages(options(pool).withScheduler(vts))
                .flatMap(c -> Mono.delay(Duration.ofSeconds(1), vts).map(t -> c.sequence())
                        .doFinally(s -> c.release()), 8)
                .doOnDiscard(PageChunk.class, PageChunk::release);
        StepVerifier.withVirtualTime(() -> consumed, () -> vts, Long.MAX_VALUE)
                .expectSubscription()
                .thenAwait(Duration.ofMillis(1200))
                .then(() -> assertEquals(4, pool.leasedBuffers(), "four chunks in the consumer's hands"))
                .thenAwait(Duration.ofMillis(50))
                .expectNext(0L)
                .expectErrorSatisfies(e -> {
                    assertTrue(e instanceof ProcessGoneException, e.toString());
                    assertEquals(5150, ((ProcessGoneException) e).pid());
                    assertTrue(e.getMessage().startsWith("process is gone: pid=5150 exited after bytes=262144 at "
                            + "chunk=4"), e.getMessage());
                })
                .verify();
        assertEquals(0, pool.leasedBuffers(), "the three chunks in flight were released on cancel");
    }

    @Test
    void aProcessExitingAtAGivenTimeFailsTheFirstReadAfterIt() {
        // 64 KiB chunks at 64 KiB per second: chunk i is read during second i
        SimulatedProcess process = SimulatedProcess.builder().pid(77)
                .region(BASE, DataSize.ofMebibytes(1), 1.0)
                .readRate(DataSize.ofKibibytes(64))
                .exitAt(Duration.ofMillis(3500))
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(256), DataSize.ofKibibytes(64));
        DumpStats stats = new DumpStats();
        StepVerifier.withVirtualTime(() -> process.pages(ReadOptions.of(pool)
                        .withPolicy(SimulatedProcess.dumpEveryRegion()).withStats(stats))
                        .doOnNext(PageChunk::release))
                .expectSubscription()
                .expectNoEvent(Duration.ofSeconds(1))
                .expectNextCount(1)
                .expectNoEvent(Duration.ofSeconds(1))
                .expectNextCount(1)
                .expectNoEvent(Duration.ofSeconds(1))
                .expectNextCount(1)
                // the read starting at 3 s still runs (the process is alive then); the one at 4 s fails
                .expectNoEvent(Duration.ofSeconds(1))
                .expectNextCount(1)
                .expectErrorSatisfies(e -> {
                    assertTrue(e instanceof ProcessGoneException, e.toString());
                    assertTrue(e.getMessage().startsWith("process is gone: pid=77 exited at=PT3.5S (read began PT4S "
                            + "ago) after bytes=262144"), e.getMessage());
                })
                .verify();
        assertEquals(4, stats.chunksRead());
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void aReadErrorNamesThePidAndAddressAndEndsTheDump() {
        long bad = BASE + 40 * PAGE + 123;
        SimulatedProcess process = SimulatedProcess.builder().pid(31337)
                .region(BASE, DataSize.ofKibibytes(256), 1.0)
                .readErrorAt(bad)
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(128), DataSize.ofKibibytes(64));
        StepVerifier.create(process.pages(options(pool)).doOnNext(PageChunk::release))
                .expectNextCount(2) // pages 0..31; the chunk with pages 32..47 covers the bad address
                .expectErrorSatisfies(e -> {
                    assertTrue(e instanceof InjectedFaultException, e.toString());
                    assertTrue(e.getMessage().startsWith("read failed: pid=31337 address=0x7f000002807b errno=EIO"),
                            e.getMessage());
                })
                .verify();
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void theReadCostPacesTheDumpInVirtualTime() {
        // 8 MiB at 2 MiB per second with 1 MiB chunks: a chunk every 0.5 s, done at 4 s
        SimulatedProcess process = SimulatedProcess.builder().fillPages(false)
                .region(BASE, DataSize.ofMebibytes(8), 1.0)
                .readCostPerMiB(Duration.ofMillis(500))
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(2), DataSize.ofMebibytes(1));
        StepVerifier.withVirtualTime(() -> process.pages(ReadOptions.of(pool)
                        .withPolicy(SimulatedProcess.dumpEveryRegion()))
                        .doOnNext(PageChunk::release))
                .expectSubscription()
                .expectNoEvent(Duration.ofMillis(499))
                .thenAwait(Duration.ofMillis(1))
                .expectNextCount(1)
                .thenAwait(Duration.ofMillis(3500))
                .expectNextCount(7)
                .verifyComplete();
        assertEquals(0, pool.leasedBuffers());
        SimulatedProcess rated = SimulatedProcess.builder().region(BASE, DataSize.ofMebibytes(1), 1.0)
                .readRate(DataSize.ofMebibytes(200)).build();
        assertEquals(20_000_000L, rated.costNanos(DataSize.ofMebibytes(4).bytes()), "4 MiB at 200 MiB/s = 20 ms");
    }
}
