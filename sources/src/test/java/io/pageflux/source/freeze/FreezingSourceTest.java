package io.pageflux.source.freeze;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.RegionPolicy;
import io.pageflux.source.incremental.ChangeDetector;
import io.pageflux.source.incremental.PageDigests;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class FreezingSourceTest {

    private final BufferPool pool = BufferPool.create(DataSize.ofMebibytes(4), DataSize.ofMebibytes(1));

    private ReadOptions options() {
        return ReadOptions.of(pool).withPolicy(RegionPolicy.criuPreDump());
    }

    @Test
    void preDumpIsFrozenOnlyForTheScanAndReadsEveryPageWhileRunning() throws Exception {
        try (SampleProcess target = SampleProcess.start(8, false)) {
            int pid = target.pid();
            List<FreezeRecord> seen = new ArrayList<>();
            FreezingSource source = FreezingSource.of(pid, Freezer.ptrace(pid), FreezeMode.PRE_DUMP).onFreeze(seen::add);
            List<Character> statesWhileReading = new ArrayList<>();
            long x = target.address(Region.X);
            long[] xPagesChecked = {0};
            source.pages(options()).map(chunk -> {
                try {
                    statesWhileReading.add(ProcTask.stat(pid).state());
                    checkX(chunk, x, target.bulkPages(), xPagesChecked);
                    return chunk.pages();
                } finally {
                    chunk.release();
                }
            }).blockLast();
            assertEquals(target.bulkPages(), xPagesChecked[0], "every page of X read, byte for byte");
            assertTrue(statesWhileReading.stream().noneMatch(s -> s == 't'), "running while read: " + statesWhileReading);
            assertEquals(1, seen.size());
            FreezeRecord r = seen.get(0);
            assertEquals(List.of(r), source.freezes());
            assertEquals(FreezeMode.PRE_DUMP, r.mode());
            assertEquals("ptrace:" + pid, r.freezer());
            assertEquals(1, r.threads());
            assertTrue(r.runs() > 0);
            assertTrue(r.frozen().compareTo(r.scan()) >= 0 && r.frozen().compareTo(r.latency()) >= 0, r.toString());
            assertEquals(0, pool.leasedBuffers());
        }
    }

    @Test
    void dumpModeStaysFrozenUntilTheReadEndsAlsoOnCancel() throws Exception {
        try (SampleProcess target = SampleProcess.start(8, true)) {
            int pid = target.pid();
            FreezingSource source = FreezingSource.of(pid, Freezer.ptrace(pid), FreezeMode.DUMP);
            List<Character> states = new ArrayList<>();
            source.pages(options()).map(chunk -> {
                states.add(ProcTask.stat(pid).state());
                chunk.release();
                return 1;
            }).blockLast();
            assertTrue(states.size() > 1 && states.stream().allMatch(s -> s == 't'), "frozen while read: " + states);
            assertNotEquals('t', ProcTask.stat(pid).state());
            assertEquals(1, source.freezes().size());

            // cancel after the first chunk: the reader closes and the target thaws
            source.pages(options()).take(1).doOnNext(PageChunk::release).blockLast();
            // the cancel closes the reader on the read worker, which thaws and then records the freeze
            ThreadFreezerTest.waitUntil(() -> source.freezes().size() == 2);
            ThreadFreezerTest.waitUntilRunning(pid);
            assertEquals(0, pool.leasedBuffers());
            assertTrue(target.isAlive());
        }
    }

    @Test
    void aPreDumpAfterRewriteHasExactlyTheRewrittenPagesPresent() throws Exception {
        try (SampleProcess target = SampleProcess.start(4, false)) {
            int pid = target.pid();
            long x = target.address(Region.X);
            long xEnd = x + target.bulkPages() * 4096;
            ChangeDetector first = new ChangeDetector(PageDigests.empty());
            FreezingSource source = FreezingSource.of(pid, Freezer.ptrace(pid), FreezeMode.PRE_DUMP);
            drain(source.withReaderDecorator(first::wrap));
            assertEquals(0, first.unchangedPages());
            PageDigests d1 = first.digests(pid, 1);

            assertEquals(target.bulkPages() / 4, target.rewrite());

            ChangeDetector second = new ChangeDetector(d1);
            List<PageRun> runs = drain(source.withReaderDecorator(second::wrap));
            long presentInX = 0;
            long holesInX = 0;
            for (PageRun run : runs) {
                for (long p = 0; p < run.pages(); p++) {
                    long a = run.address() + p * 4096;
                    boolean present = PageFlags.has(run.flags(), PageFlags.PE_PRESENT);
                    if (a >= x && a < xEnd) {
                        long page = (a - x) / 4096;
                        assertEquals(page % 4 == 0, present, "X page " + page + " " + run);
                        presentInX += present ? 1 : 0;
                        holesInX += present ? 0 : 1;
                    } else if (a >= target.address(Region.A) && a < target.address(Region.A) + 64 * 4096) {
                        assertEquals(PageFlags.PE_PARENT, run.flags(), "A never changes: " + run);
                    }
                }
            }
            assertEquals(target.bulkPages() / 4, presentInX);
            assertEquals(target.bulkPages() * 3 / 4, holesInX);
            assertTrue(second.unchangedPages() >= holesInX + 64);
            assertEquals(0, pool.leasedBuffers());
        }
    }

    @Test
    void aLayoutThatChangedBeforeTheFreezeIsReadAgain() throws Exception {
        try (SampleProcess target = SampleProcess.start(0, false)) {
            int pid = target.pid();
            long a = target.address(Region.A);
            FreezingSource.Layout before = FreezingSource.Layout.read(pid);
            assertTrue(before.unchanged(pid));
            assertTrue(before.whileFrozen(pid) == before.regions, "unchanged: the regions read before are used");
            assertTrue(before.regions.stream().anyMatch(r -> r.start() == a));
            target.signal(SampleProcess.SIGUSR1);
            assertEquals("unmapped A", target.readLine());
            assertTrue(!before.unchanged(pid));
            List<io.pageflux.source.MemoryRegion> now = before.whileFrozen(pid);
            assertTrue(now.stream().noneMatch(r -> r.contains(a)), "A is gone from the regions read again");
            assertTrue(FreezingSource.sameLayout(now, FreezingSource.Layout.read(pid).regions));
        }
    }

    private List<PageRun> drain(FreezingSource source) {
        List<PageRun> runs = new ArrayList<>();
        source.pages(options()).map(chunk -> {
            try {
                runs.addAll(chunk.runs());
                return 1;
            } finally {
                chunk.release();
            }
        }).blockLast();
        return runs;
    }

    /** Checks the chunk's pages inside X against the sample's known contents (generation 0). */
    private static void checkX(PageChunk chunk, long x, long xPages, long[] checked) {
        ByteBuffer data = chunk.data();
        int offset = 0;
        for (PageRun run : chunk.runs()) {
            for (long p = 0; p < run.pages(); p++) {
                long a = run.address() + p * 4096;
                if (a >= x && a < x + xPages * 4096) {
                    byte[] actual = new byte[4096];
                    data.get(offset + (int) (p * 4096), actual);
                    assertArrayEquals(SampleProcess.expectedPage(Region.X, (a - x) / 4096), actual, "X page at 0x"
                            + Long.toHexString(a));
                    checked[0]++;
                }
            }
            offset += (int) run.bytes();
        }
    }
}
