package io.pageflux.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.SinkResult;
import io.pageflux.source.BufferPool;
import io.pageflux.source.ChunkReader;
import io.pageflux.source.ChunkStream;
import io.pageflux.source.DataSize;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.MemorySource;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PooledBuffer;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.RegionDecision;
import io.pageflux.source.RegionPolicy;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;

/**
 * The Dump builder's own logic against a scripted in-memory source (no other engineer's code):
 * configuration copies, validation before the target is touched, the context the sinks see, the
 * report's counts, progress snapshots, and the pool returning to zero on failure and cancel.
 */
class DumpTest {

    private static final int PAGE = PageRun.PAGE_SIZE;

    @Test
    void configurationMethodsReturnCopiesAndLeaveTheOriginalAlone() {
        ScriptedSource source = new ScriptedSource(1, 4, 10);
        Dump base = Dump.of(source);
        Dump changed = base.budget(DataSize.ofMebibytes(8)).chunkSize(DataSize.ofKibibytes(64)).preDump(true);

        assertNotSame(base, changed);
        assertEquals(Dump.DEFAULT_BUDGET, base.budget());
        assertEquals(Dump.DEFAULT_CHUNK_SIZE, base.chunkSize());
        assertFalse(base.isPreDump());
        assertEquals(DataSize.ofMebibytes(8), changed.budget());
        assertEquals(DataSize.ofKibibytes(64), changed.chunkSize());
        assertTrue(changed.isPreDump());
        assertSame(RegionPolicy.criuFullDump(), base.policy());
        assertSame(RegionPolicy.criuPreDump(), changed.policy(), "a pre-dump defaults to the pre-dump preset");
        RegionPolicy mine = r -> RegionDecision.skip("mine");
        assertSame(mine, changed.regions(mine).policy(), "an explicit policy wins over the preset");
    }

    @Test
    void budgetBelowOneChunkFailsAtOnceWithoutTouchingTheTarget() {
        ScriptedSource source = new ScriptedSource(1, 4, 10);
        Dump dump = Dump.of(source).budget(DataSize.ofMebibytes(1)).chunkSize(DataSize.ofMebibytes(4))
                .to(new CollectingSink(Duration.ZERO));

        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, dump::run);

        assertTrue(e.getMessage().contains("budget 1 MiB is smaller than one chunk (4 MiB)"), e.getMessage());
        assertEquals(0, source.regionsCalls.get(), "regions were read although the budget is invalid");
        assertEquals(0, source.subscriptions.get());
    }

    @Test
    void runWithoutSinkIsRejected() {
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> Dump.of(new ScriptedSource(1, 1, 1)).run());
        assertTrue(e.getMessage().contains("no sink"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Dump.of(new ScriptedSource(1, 1, 1)).to());
    }

    @Test
    void sinkSeesEveryPageAndTheContextAndTheReportAddsUp() throws Exception {
        // 10 runs of 3 pages, 2 runs per chunk of 8 pages -> 5 chunks of 6 pages
        ScriptedSource source = new ScriptedSource(4242, 3, 10);
        CollectingSink sink = new CollectingSink(Duration.ZERO);
        long uptimeBefore = readUptimeMicros();

        DumpReport report = Dump.of(source).budget(DataSize.ofKibibytes(64)).chunkSize(DataSize.ofKibibytes(32))
                .preDump(true).to(sink).run().block(Duration.ofSeconds(10));

        long uptimeAfter = readUptimeMicros();
        DumpContext context = sink.context.get();
        assertEquals(4242, context.pid());
        assertEquals(source.regions(), context.regions());
        assertTrue(context.preDump());
        assertTrue(context.dumpUptimeMicros() >= uptimeBefore && context.dumpUptimeMicros() <= uptimeAfter,
                "dump_uptime " + context.dumpUptimeMicros() + " outside [" + uptimeBefore + ", " + uptimeAfter + "]");

        assertEquals(30, sink.pages.size());
        for (int i = 0; i < 30; i++) {
            long address = ScriptedSource.BASE + (long) i * PAGE;
            assertEquals(address, sink.pages.get(i).address);
            assertEquals(ScriptedSource.fill(address), sink.pages.get(i).firstByte);
            assertEquals(ScriptedSource.fill(address), sink.pages.get(i).lastByte);
        }

        assertEquals(4242, report.pid());
        assertTrue(report.preDump());
        assertEquals(3, report.regionsSeen());
        assertEquals(2, report.regionsDumped());
        assertEquals(Map.of("shared file mapping", 1L), report.regionsSkipped());
        assertEquals(10, report.runs());
        assertEquals(30, report.pagesPlanned());
        assertEquals(30, report.pagesDumped());
        assertEquals(30L * PAGE, report.bytesDumped());
        assertEquals(5, report.chunks());
        assertEquals(2, report.pagesVanished());
        assertEquals(List.of(0xdead000L, 0xdead000L + PAGE), report.vanishedAddresses());
        assertEquals(32 * 1024, report.chunkSize());
        assertEquals(2, report.poolCapacity());
        assertTrue(report.peakBuffersLeased() >= 1 && report.peakBuffersLeased() <= 2, "peak " + report.peakBuffersLeased());
        assertEquals(List.of(new SinkResult("collect", 30, 30L * PAGE, 10)), report.sinks());
        assertEquals(0, source.lastPool.get().leasedBuffers(), "buffers still leased after the dump");
        assertTrue(source.lastPool.get().isClosed(), "the pool of a completed dump is closed");
    }

    @Test
    void severalSinksEachGetEveryPageAndTheirOwnResult() throws Exception {
        ScriptedSource source = new ScriptedSource(5, 2, 12);
        CollectingSink fast = new CollectingSink(Duration.ZERO);
        CollectingSink slow = new CollectingSink(Duration.ofMillis(2));

        DumpReport report = Dump.of(source).budget(DataSize.ofKibibytes(16)).chunkSize(DataSize.ofKibibytes(8))
                .to(fast, slow).run().block(Duration.ofSeconds(10));

        assertEquals(24, fast.pages.size());
        assertEquals(fast.pages, slow.pages);
        assertEquals(List.of(new SinkResult("collect", 24, 24L * PAGE, 12), new SinkResult("collect", 24, 24L * PAGE, 12)),
                report.sinks());
        assertEquals(24, report.pagesDumped());
        awaitZeroLeased(source.lastPool.get());
    }

    @Test
    void progressListenerEndsWithAFinishedSnapshotOfEverything() {
        ScriptedSource source = new ScriptedSource(7, 2, 20);
        List<DumpProgress> seen = new CopyOnWriteArrayList<>();

        // a slow sink so that a few ticks happen while it runs
        Dump.of(source).budget(DataSize.ofKibibytes(16)).chunkSize(DataSize.ofKibibytes(8))
                .to(new CollectingSink(Duration.ofMillis(5)))
                .progress(Duration.ofMillis(1), seen::add)
                .run().block(Duration.ofSeconds(10));

        DumpProgress last = seen.get(seen.size() - 1);
        assertTrue(last.finished());
        assertEquals(40, last.pagesDone());
        assertEquals(40, last.pagesPlanned());
        assertEquals(1.0, last.fraction());
        assertEquals(1, seen.stream().filter(DumpProgress::finished).count());
        for (DumpProgress p : seen) {
            assertTrue(p.leasedBuffers() <= 2, "more buffers leased than the budget allows: " + p);
            assertTrue(p.pagesDone() <= p.pagesPlanned() || p.pagesPlanned() == 0, p.toString());
        }
    }

    @Test
    void sourceFailureReachesTheCallerAndReturnsEveryBuffer() {
        ScriptedSource source = new ScriptedSource(9, 1, 50).failingAfterChunks(3);
        CollectingSink sink = new CollectingSink(Duration.ZERO);

        Dump dump = Dump.of(source).budget(DataSize.ofKibibytes(16)).chunkSize(DataSize.ofKibibytes(4)).to(sink);
        ProcessGoneException e = assertThrows(ProcessGoneException.class, () -> dump.run().block(Duration.ofSeconds(10)));

        assertEquals(9, e.pid());
        assertEquals(3, sink.pages.size());
        assertEquals(0, source.lastPool.get().leasedBuffers());
    }

    @Test
    void failingSinkAndCancelBothReturnEveryBuffer() throws Exception {
        ScriptedSource source = new ScriptedSource(9, 1, 200);
        PageSink failing = new PageSink() {
            @Override
            public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
                return chunks.concatMap(c -> {
                    c.release();
                    return c.sequence() == 4 ? Mono.error(new IllegalStateException("disk on fire")) : Mono.just(c);
                }, 1).then(Mono.empty());
            }

            @Override
            public String describe() {
                return "failing";
            }
        };
        Dump dump = Dump.of(source).budget(DataSize.ofKibibytes(16)).chunkSize(DataSize.ofKibibytes(4));
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> dump.to(failing).run().block(Duration.ofSeconds(10)));
        assertEquals("disk on fire", e.getMessage());
        awaitZeroLeased(source.lastPool.get());
        assertTrue(source.lastPool.get().isClosed(), "the pool of a failed dump is closed");

        CollectingSink slow = new CollectingSink(Duration.ofMillis(20));
        var running = dump.to(slow).run().subscribe();
        Thread.sleep(100);
        running.dispose();
        awaitZeroLeased(source.lastPool.get());
        assertTrue(source.lastPool.get().isClosed(), "the pool of a cancelled dump is closed");
        assertTrue(slow.pages.size() < 200, "the cancelled dump ran to the end");
    }

    private static void awaitZeroLeased(BufferPool pool) throws InterruptedException {
        // release happens on the reader's worker after cancel; give it a moment, then insist
        for (int i = 0; i < 200 && pool.leasedBuffers() != 0; i++) {
            Thread.sleep(10);
        }
        assertEquals(0, pool.leasedBuffers(), pool.toString());
    }

    private static long readUptimeMicros() throws Exception {
        String s = Files.readString(Path.of("/proc/uptime")).trim().split(" ")[0];
        return new java.math.BigDecimal(s).movePointRight(6).longValueExact();
    }

    /** A page the collecting sink saw. */
    record SeenPage(long address, byte firstByte, byte lastByte) {
    }

    /** Records each page's address and first/last byte, then releases the chunk; optionally slow. */
    static final class CollectingSink implements PageSink {
        final List<SeenPage> pages = Collections.synchronizedList(new ArrayList<>());
        final AtomicReference<DumpContext> context = new AtomicReference<>();
        private final Duration delay;

        CollectingSink(Duration delay) {
            this.delay = delay;
        }

        @Override
        public Mono<SinkResult> write(DumpContext ctx, Flux<PageChunk> chunks) {
            context.set(ctx);
            AtomicInteger entries = new AtomicInteger();
            return chunks.concatMap(chunk -> {
                try {
                    ByteBuffer data = chunk.data();
                    int offset = 0;
                    for (PageRun run : chunk.runs()) {
                        entries.incrementAndGet();
                        for (long p = 0; p < run.pages(); p++) {
                            pages.add(new SeenPage(run.address() + p * PAGE, data.get(offset),
                                    data.get(offset + PAGE - 1)));
                            offset += PAGE;
                        }
                    }
                } finally {
                    chunk.release();
                }
                return delay.isZero() ? Mono.just(1) : Mono.delay(delay).thenReturn(1);
            }, 1).then(Mono.fromSupplier(() -> new SinkResult("collect", pages.size(), (long) pages.size() * PAGE,
                    entries.get())));
        }

        @Override
        public String describe() {
            return "collect";
        }
    }

    /**
     * Three regions (one skipped), {@code runs} runs of {@code runPages} pages at BASE, two runs
     * per chunk (as far as the chunk size allows); every byte of page P is {@link #fill(long)}.
     * Reports two vanished pages and counts regions, runs and planned pages up front.
     */
    static final class ScriptedSource implements MemorySource {
        static final long BASE = 0x7f0000000000L;
        final AtomicInteger regionsCalls = new AtomicInteger();
        final AtomicInteger subscriptions = new AtomicInteger();
        final AtomicReference<BufferPool> lastPool = new AtomicReference<>();
        private final int pid;
        private final int runPages;
        private final int runs;
        private int failAfterChunks = -1;

        ScriptedSource(int pid, int runPages, int runs) {
            this.pid = pid;
            this.runPages = runPages;
            this.runs = runs;
        }

        ScriptedSource failingAfterChunks(int n) {
            failAfterChunks = n;
            return this;
        }

        static byte fill(long address) {
            return (byte) (address / PAGE * 13 + 1);
        }

        @Override
        public int pid() {
            return pid;
        }

        @Override
        public List<MemoryRegion> regions() {
            regionsCalls.incrementAndGet();
            return List.of(
                    new MemoryRegion(BASE, BASE + (long) runs * runPages * PAGE, "rw-p", 0, "00:00", 0, "", Set.of(), Map.of()),
                    new MemoryRegion(0xdead000L, 0xdead000L + 2 * PAGE, "rw-p", 0, "00:00", 0, "", Set.of(), Map.of()),
                    new MemoryRegion(0xf000000L, 0xf000000L + PAGE, "r--s", 0, "08:01", 12, "/etc/x", Set.of(), Map.of()));
        }

        @Override
        public Flux<PageChunk> pages(ReadOptions options) {
            subscriptions.incrementAndGet();
            lastPool.set(options.pool());
            return ChunkStream.from(() -> new ChunkReader() {
                int next;
                int chunks;

                {
                    options.stats().regionSeen();
                    options.stats().regionSeen();
                    options.stats().regionSeen();
                    options.stats().regionDumped();
                    options.stats().regionDumped();
                    options.stats().regionSkipped("shared file mapping");
                    options.stats().pageVanished(0xdead000L);
                    options.stats().pageVanished(0xdead000L + PAGE);
                    for (int i = 0; i < runs; i++) {
                        options.stats().runScanned();
                    }
                    options.stats().addPlannedPages((long) runs * runPages);
                }

                @Override
                public PageChunk next(PooledBuffer buffer) {
                    if (chunks == failAfterChunks) {
                        throw new ProcessGoneException(pid, "scripted");
                    }
                    List<PageRun> taken = new ArrayList<>();
                    int bytes = 0;
                    while (next < runs && taken.size() < 2 && bytes + runPages * PAGE <= buffer.capacity()) {
                        long address = BASE + (long) next * runPages * PAGE;
                        taken.add(new PageRun(address, runPages, PagemapId.task(pid), address, PageFlags.PE_PRESENT));
                        for (int p = 0; p < runPages; p++) {
                            byte v = fill(address + (long) p * PAGE);
                            for (int i = 0; i < PAGE; i++) {
                                buffer.buffer().put(bytes + i, v);
                            }
                            bytes += PAGE;
                        }
                        next++;
                    }
                    if (taken.isEmpty()) {
                        return null;
                    }
                    chunks++;
                    options.stats().chunkRead(bytes / PAGE);
                    return PageChunk.of(buffer, bytes, taken, chunks - 1);
                }
            }, options.pool(), options.scheduler());
        }
    }
}
