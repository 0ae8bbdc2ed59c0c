package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.reactivestreams.Subscription;
import reactor.core.publisher.BaseSubscriber;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;
import reactor.test.StepVerifier;
import reactor.test.scheduler.VirtualTimeScheduler;

/** The demand-driven stream itself, with a scripted reader: what is read when, and what is freed. */
class ChunkStreamTest {

    private static final int PAGE = PageRun.PAGE_SIZE;
    private static final DataSize CHUNK = DataSize.ofKibibytes(16);

    /** {@code chunks} chunks of 4 pages; chunk {@code i}'s bytes are all {@code (byte) i}. */
    static final class ScriptedReader implements ChunkReader {
        final int chunks;
        final boolean knowsWhenDone;
        int failAt = -1;
        Duration cost = Duration.ZERO;
        int reads;
        int closes;

        ScriptedReader(int chunks, boolean knowsWhenDone) {
            this.chunks = chunks;
            this.knowsWhenDone = knowsWhenDone;
        }

        @Override
        public PageChunk next(PooledBuffer buffer) {
            int i = reads++;
            if (i == failAt) {
                throw new PagefluxException("scripted failure: chunk=" + i);
            }
            if (i >= chunks) {
                return null;
            }
            for (int b = 0; b < 4 * PAGE; b++) {
                buffer.buffer().put(b, (byte) i);
            }
            long address = 0x10000L + (long) i * 4 * PAGE;
            return PageChunk.of(buffer, 4 * PAGE,
                    List.of(new PageRun(address, 4, PagemapId.task(7), address, PageFlags.PE_PRESENT)), i);
        }

        @Override
        public boolean exhausted() {
            return knowsWhenDone && reads >= chunks;
        }

        @Override
        public Duration cost(PageChunk chunk) {
            return cost;
        }

        @Override
        public void close() {
            closes++;
        }
    }

    private static BufferPool pool(int buffers) {
        return BufferPool.create(DataSize.ofBytes(CHUNK.bytes() * buffers), CHUNK);
    }

    @Test
    void readsOnlyWhatIsRequestedAndDeliversTheBytes() {
        BufferPool pool = pool(4);
        ScriptedReader reader = new ScriptedReader(5, true);
        Flux<PageChunk> stream = ChunkStream.from(() -> reader, pool, Schedulers.immediate());

        StepVerifier.create(stream, 0)
                .expectSubscription()
                .then(() -> assertEquals(0, reader.reads, "nothing is read before a request"))
                .thenRequest(2)
                .assertNext(c -> assertChunk(c, 0))
                .assertNext(c -> assertChunk(c, 1))
                .then(() -> assertEquals(2, reader.reads, "exactly the two requested chunks were read"))
                .thenRequest(3)
                .assertNext(c -> assertChunk(c, 2))
                .assertNext(c -> assertChunk(c, 3))
                .assertNext(c -> assertChunk(c, 4))
                // completes without a sixth request: the reader said it is exhausted
                .verifyComplete();
        assertEquals(5, reader.reads);
        assertEquals(1, reader.closes);
        assertEquals(0, pool.leasedBuffers());
    }

    private static void assertChunk(PageChunk chunk, int i) {
        try {
            assertEquals(i, chunk.sequence());
            assertEquals(4 * PAGE, chunk.bytes());
            assertEquals(0x10000L + (long) i * 4 * PAGE, chunk.runs().get(0).address());
            var data = chunk.data();
            for (int b = 0; b < chunk.bytes(); b++) {
                assertEquals((byte) i, data.get(b), "chunk " + i + " byte " + b);
            }
        } finally {
            chunk.release();
        }
    }

    @Test
    void aConsumerHoldingEveryBufferStillSeesCompletion() {
        BufferPool pool = pool(3);
        ScriptedReader reader = new ScriptedReader(3, true);
        List<PageChunk> all = ChunkStream.from(() -> reader, pool, Schedulers.immediate())
                .collectList()
                .block(Duration.ofSeconds(5));
        assertEquals(3, all.size());
        assertEquals(3, pool.leasedBuffers(), "the list holds all three buffers");
        all.forEach(PageChunk::release);
        assertEquals(0, pool.leasedBuffers());
        assertEquals(1, reader.closes);
    }

    @Test
    void aReaderThatCannotTellCompletesOnTheNextEmptyRead() {
        BufferPool pool = pool(2);
        ScriptedReader reader = new ScriptedReader(3, false);
        StepVerifier.create(ChunkStream.from(() -> reader, pool, Schedulers.immediate())
                        .doOnNext(PageChunk::release))
                .expectNextCount(3)
                .verifyComplete();
        assertEquals(4, reader.reads, "the fourth read found nothing and completed the stream");
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void waitsForAFreeBufferInsteadOfReadingAhead() {
        BufferPool pool = pool(2);
        ScriptedReader reader = new ScriptedReader(10, true);
        List<PageChunk> held = new ArrayList<>();
        AtomicReference<Subscription> subscription = new AtomicReference<>();
        ChunkStream.from(() -> reader, pool, Schedulers.immediate()).subscribe(new BaseSubscriber<>() {
            @Override
            protected void hookOnSubscribe(Subscription s) {
                subscription.set(s);
                s.request(Long.MAX_VALUE);
            }

            @Override
            protected void hookOnNext(PageChunk chunk) {
                held.add(chunk);
            }
        });
        assertEquals(2, held.size(), "unbounded demand, but only two buffers");
        assertEquals(2, reader.reads);
        assertEquals(1, pool.waits(), "one wait recorded for the stall, not one per wake-up");
        held.get(0).release();
        assertEquals(3, held.size(), "a returned buffer resumes the stream");
        assertEquals(2, pool.leasedBuffers());
        subscription.get().cancel();
        held.forEach(PageChunk::release);
        assertEquals(0, pool.leasedBuffers());
        assertEquals(1, reader.closes, "cancel closes the reader");
    }

    @Test
    void aFailingReaderReturnsItsBufferAndIsClosed() {
        BufferPool pool = pool(4);
        ScriptedReader reader = new ScriptedReader(10, true);
        reader.failAt = 2;
        StepVerifier.create(ChunkStream.from(() -> reader, pool, Schedulers.immediate())
                        .doOnNext(PageChunk::release))
                .expectNextCount(2)
                .verifyErrorMessage("scripted failure: chunk=2");
        assertEquals(0, pool.leasedBuffers());
        assertEquals(1, reader.closes);
    }

    @Test
    void aConsumerThatFailsEndsTheStreamAndFreesEverything() {
        BufferPool pool = pool(4);
        ScriptedReader reader = new ScriptedReader(10, true);
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        // a sink-like consumer: "writes" each chunk for one second, releases it whatever happens,
        // with a prefetch of 3 (within the budget)
        Flux<Integer> written = ChunkStream.from(() -> reader, pool, vts)
                .concatMap(c -> Mono.delay(Duration.ofSeconds(1), vts).map(tick -> {
                    if (c.sequence() == 3) {
                        throw new IllegalStateException("write failed at chunk=3");
                    }
                    return c.bytes();
                }).doFinally(signal -> c.release()), 3)
                .doOnDiscard(PageChunk.class, PageChunk::release);
        StepVerifier.withVirtualTime(() -> written, () -> vts, Long.MAX_VALUE)
                .expectSubscription()
                .then(() -> assertEquals(3, pool.leasedBuffers(), "the prefetch: one chunk being written, two queued"))
                .thenAwait(Duration.ofSeconds(3))
                .expectNext(4 * PAGE, 4 * PAGE, 4 * PAGE)
                .thenAwait(Duration.ofSeconds(1))
                .expectErrorMessage("write failed at chunk=3")
                .verifyThenAssertThat()
                // the chunks queued behind the failing one were discarded, and so released
                .hasDiscardedElementsMatching(d -> d.stream().allMatch(o -> o instanceof PageChunk c
                        && c.sequence() > 3 && c.isReleased()))
                .hasDiscardedElementsSatisfying(d -> assertEquals(reader.reads - 4, d.size(),
                        "every chunk read after the failing one was discarded"));
        assertEquals(0, pool.leasedBuffers());
        // the prefetch plus the chunk whose write just finished (doFinally releases it after the next request)
        assertTrue(pool.peakLeasedBuffers() <= 4, "peak " + pool.peakLeasedBuffers());
        assertEquals(1, reader.closes);
    }

    @Test
    void theReadCostElapsesOnTheSchedulersClock() {
        BufferPool pool = pool(4);
        ScriptedReader reader = new ScriptedReader(3, true);
        reader.cost = Duration.ofSeconds(2);
        StepVerifier.withVirtualTime(() -> ChunkStream.from(() -> reader, pool, Schedulers.parallel())
                        .doOnNext(PageChunk::release))
                .expectSubscription()
                .expectNoEvent(Duration.ofSeconds(2))
                .expectNextCount(1)
                .expectNoEvent(Duration.ofSeconds(2))
                .expectNextCount(1)
                .expectNoEvent(Duration.ofSeconds(2))
                .expectNextCount(1)
                .verifyComplete();
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void cancelDuringTheReadCostReturnsTheChunkBeingRead() {
        VirtualTimeScheduler vts = VirtualTimeScheduler.create();
        BufferPool pool = pool(4);
        ScriptedReader reader = new ScriptedReader(3, true);
        reader.cost = Duration.ofSeconds(2);
        StepVerifier.withVirtualTime(() -> ChunkStream.from(() -> reader, pool, vts), () -> vts, Long.MAX_VALUE)
                .expectSubscription()
                .thenAwait(Duration.ofSeconds(1))
                .then(() -> assertEquals(1, pool.leasedBuffers(), "the first chunk is being read"))
                .thenCancel()
                .verify();
        assertEquals(0, pool.leasedBuffers());
        assertEquals(1, reader.closes);
        vts.advanceTimeBy(Duration.ofSeconds(10));
        assertEquals(1, reader.reads, "nothing is read after cancel");
    }

    @Test
    void aRequestAfterCompletionIsHarmless() {
        BufferPool pool = pool(2);
        ScriptedReader reader = new ScriptedReader(1, true);
        List<Object> signals = new ArrayList<>();
        Scheduler single = Schedulers.newSingle("chunk-stream-test");
        try {
            AtomicReference<Subscription> subscription = new AtomicReference<>();
            Mono<Void> done = Mono.create(done1 -> ChunkStream.from(() -> reader, pool, single)
                    .subscribe(new BaseSubscriber<>() {
                        @Override
                        protected void hookOnSubscribe(Subscription s) {
                            subscription.set(s);
                            s.request(1);
                        }

                        @Override
                        protected void hookOnNext(PageChunk chunk) {
                            signals.add(chunk.sequence());
                            chunk.release();
                        }

                        @Override
                        protected void hookOnComplete() {
                            signals.add("complete");
                            done1.success();
                        }
                    }));
            done.block(Duration.ofSeconds(5));
            subscription.get().request(5);
            // the stream cleans up right after onComplete returns, in the same task on the single thread
            Mono.empty().subscribeOn(single).block(Duration.ofSeconds(5));
            assertEquals(List.of(0L, "complete"), signals);
            assertEquals(1, reader.closes);
            assertEquals(0, pool.leasedBuffers());
        } finally {
            single.dispose();
        }
    }

    @Test
    void aStoppedSchedulerFailsTheStreamWithAMessage() {
        BufferPool pool = pool(2);
        Scheduler stopped = Schedulers.newSingle("stopped");
        stopped.dispose();
        StepVerifier.create(ChunkStream.from(() -> new ScriptedReader(1, true), pool, stopped))
                .expectErrorSatisfies(e -> {
                    assertTrue(e instanceof IllegalStateException, e.toString());
                    assertTrue(e.getMessage().contains("the read scheduler rejected the dump's reads"), e.getMessage());
                })
                .verify(Duration.ofSeconds(5));
        assertEquals(0, pool.leasedBuffers());
    }
}
