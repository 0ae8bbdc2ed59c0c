package io.pageflux.source.incremental;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.PlannedRun;
import io.pageflux.source.RegionDecision.ReadVia;
import io.pageflux.source.freeze.RunList;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The range form of the soft-dirty split ({@link SoftDirty#split(PageRun, PageRanges, PageRanges)}): dirty
 * ranges and the parent's runs merged in one walk. Every case is also checked against the page-by-page
 * definition (a page is a hole iff the parent has it and it is not dirty).
 */
class SoftDirtyRangesTest {

    private static final long P = 4096;
    private static final long X = 0x7f0000000000L;
    private static final PagemapId PM = PagemapId.task(7);
    private static final int LAZY = PageFlags.PE_LAZY | PageFlags.PE_PRESENT;

    private static PageRanges ranges(long... pagePairs) {
        PageRanges r = new PageRanges();
        for (int i = 0; i < pagePairs.length; i += 2) {
            r.add(X + pagePairs[i] * P, X + pagePairs[i + 1] * P);
        }
        return r;
    }

    private static PageRun read(long fromPage, long pages) {
        return new PageRun(X + fromPage * P, pages, PM, X + fromPage * P, LAZY);
    }

    private static PageRun hole(long fromPage, long pages) {
        return new PageRun(X + fromPage * P, pages, PM, X + fromPage * P, PageFlags.PE_PARENT);
    }

    /**
     * The split page by page, as the definition says, written independently of {@link SoftDirty} (small runs
     * only): a page becomes a hole iff the parent has it and its soft-dirty bit is clear; neighbours of one
     * kind merge.
     */
    private static List<PageRun> perPage(PageRun run, PageRanges dirty, PageRanges parent) {
        List<PageRun> pieces = new ArrayList<>();
        long start = 0;
        boolean startHole = false;
        for (long p = 0; p <= run.pages(); p++) {
            boolean hole = false;
            if (p < run.pages()) {
                long a = run.address() + p * P;
                long vaddr = run.pagemapVaddr() + p * P;
                hole = parent.pagesWithin(vaddr, vaddr + P) == 1 && dirty.pagesWithin(a, a + P) == 0;
            }
            if (p == run.pages() || (p > 0 && hole != startHole)) {
                pieces.add(new PageRun(run.address() + start * P, p - start, run.pagemap(),
                        run.pagemapVaddr() + start * P, startHole ? PageFlags.PE_PARENT : run.flags()));
                start = p;
            }
            if (p == start) {
                startHole = hole;
            }
        }
        return pieces;
    }

    private static void assertSplit(List<PageRun> expected, PageRun run, PageRanges dirty, PageRanges parent) {
        assertEquals(expected, SoftDirty.split(run, dirty, parent));
        assertEquals(expected, perPage(run, dirty, parent), "the page-by-page definition agrees");
    }

    @Test
    void aDirtyRangeSpanningTwoRunsIsCutAtTheBoundary() {
        // runs [0,10) and [10,20) (one VMA split by the scan); pages 8..12 dirty; the parent has everything
        PageRanges dirty = ranges(8, 12);
        PageRanges parent = ranges(0, 20);
        assertSplit(List.of(hole(0, 8), read(8, 2)), read(0, 10), dirty, parent);
        assertSplit(List.of(read(10, 2), hole(12, 8)), read(10, 10), dirty, parent);
    }

    @Test
    void aParentRunPartlyOverlappingTheRunOnlyMakesHolesWhereTheyOverlap() {
        // the parent has pages 5..30 (it starts inside the run and ends past it); nothing dirty
        assertSplit(List.of(read(0, 5), hole(5, 15)), read(0, 20), new PageRanges(), ranges(5, 30));
        // and pages -10..3 (before the run): only 0..3 are holes
        assertSplit(List.of(hole(0, 3), read(3, 17)), read(0, 20), new PageRanges(), ranges(-10, 3));
        // a dirty range inside the overlap, another outside the parent
        assertSplit(List.of(read(0, 7), hole(7, 2), read(9, 2), hole(11, 9)), read(0, 20), ranges(2, 4, 9, 11),
                ranges(7, 30));
    }

    @Test
    void adjacentRangesMergeAndTouchingParentRunsMakeOneHole() {
        PageRanges dirty = ranges(2, 4, 4, 6);
        assertEquals(1, dirty.size(), "touching dirty ranges are one range");
        assertEquals(X + 6 * P, dirty.end(0));
        // the parent's pages as the digest file stores them may be runs that touch: one range, so one hole
        PageDigests.Builder b = PageDigests.builder();
        for (int p = 0; p < 20; p++) {
            b.add(PM, X + p * P, p);
        }
        PageRanges parent = new PageRanges();
        b.build(7, 42).runsIn(PM, X, X + 20 * P, parent);
        assertEquals(ranges(0, 20), parent);
        assertSplit(List.of(hole(0, 2), read(2, 4), hole(6, 14)), read(0, 20), dirty, parent);
        // a dirty range right after the parent's last page, and one right before its first
        assertSplit(List.of(read(0, 10), hole(10, 5), read(15, 5)), read(0, 20), ranges(8, 10, 15, 17), ranges(10, 15));
    }

    @Test
    void emptyListsWholeRunsAndNothingInCommon() {
        PageRun run = read(0, 16);
        assertEquals(List.of(run), SoftDirty.split(run, new PageRanges(), new PageRanges()), "no parent: read whole");
        assertSplit(List.of(hole(0, 16)), run, new PageRanges(), ranges(0, 16));
        assertSplit(List.of(run), run, ranges(0, 16), ranges(0, 16));
        assertSplit(List.of(run), run, ranges(-5, 40), ranges(0, 16));
        assertSplit(List.of(run), run, ranges(), ranges(100, 200));
        assertSplit(List.of(hole(0, 16)), run, ranges(100, 200, 300, 301), ranges(0, 16));
        assertSame(run, SoftDirty.split(run, ranges(0, 16), ranges(0, 16)).get(0));
    }

    private static void assertSame(Object a, Object b) {
        assertTrue(a == b, "the run itself, not a copy: " + a);
    }

    @Test
    void sharedMemoryRunsCompareTheParentByObjectOffset() {
        // a shmem-style run: target address X, pagemap offset 0; the parent's ranges are offsets
        PagemapId shm = PagemapId.shmem(3);
        PageRun run = new PageRun(X, 8, shm, 0, LAZY);
        PageRanges parent = new PageRanges().add(2 * P, 6 * P);
        PageRanges dirty = ranges(3, 4);
        assertEquals(List.of(new PageRun(X, 2, shm, 0, LAZY), new PageRun(X + 2 * P, 1, shm, 2 * P, PageFlags.PE_PARENT),
                new PageRun(X + 3 * P, 1, shm, 3 * P, LAZY), new PageRun(X + 4 * P, 2, shm, 4 * P, PageFlags.PE_PARENT),
                new PageRun(X + 6 * P, 2, shm, 6 * P, LAZY)), SoftDirty.split(run, dirty, parent));
    }

    @Test
    void randomLayoutsAgreeWithThePageByPageDefinition() {
        Random random = new Random(20261126);
        for (int round = 0; round < 300; round++) {
            int pages = 1 + random.nextInt(200);
            PageRanges dirty = randomRanges(random, pages);
            PageRanges parent = randomRanges(random, pages);
            PageRun run = read(random.nextInt(5), pages - Math.min(pages - 1, random.nextInt(5)));
            List<PageRun> pieces = SoftDirty.split(run, dirty, parent);
            assertEquals(perPage(run, dirty, parent), pieces, "round " + round + " dirty=" + dirty + " parent=" + parent);
            for (int i = 1; i < pieces.size(); i++) {
                assertEquals(pieces.get(i - 1).end(), pieces.get(i).address(), "contiguous");
                assertTrue(pieces.get(i - 1).flags() != pieces.get(i).flags(), "no two neighbours of one kind");
            }
        }
    }

    private static PageRanges randomRanges(Random random, int pages) {
        PageRanges r = new PageRanges();
        long at = -2;
        while (true) {
            at += random.nextInt(12);
            long len = 1 + random.nextInt(10);
            if (at >= pages + 3) {
                return r;
            }
            r.add(X + at * P, X + (at + len) * P);
            at += len;
        }
    }

    @Test
    void aHugeSparseMappingIsSplitWithoutAPerPageStructure() {
        // 64 GiB reserved and planned as one run (16 Mi pages), the parent has three stretches, four ranges dirty
        long pages = 64L << 30 >> 12;
        PageRun huge = read(0, pages);
        PageDigests.Builder b = PageDigests.builder();
        long[][] parentStretches = {{0, 1000}, {1L << 22, (1L << 22) + 5000}, {pages - 100, pages}};
        for (long[] s : parentStretches) {
            for (long p = s[0]; p < s[1]; p++) {
                b.add(PM, X + p * P, p);
            }
        }
        PageDigests parent = b.build(7, 42).withSoftDirtyCleared(true);
        PageRanges dirty = ranges(10, 20, 999, 1001, (1L << 22) + 4000, (1L << 22) + 6000, pages - 1, pages);
        RecordingKernel kernel = new RecordingKernel(dirty);
        SoftDirtyDetector detector = new SoftDirtyDetector(parent, 7, kernel);
        RunList scanned = new RunList();
        scanned.add(new PlannedRun(huge, ReadVia.PROCESS_VM_READV));

        long allocatedBefore = allocatedBytes();
        RunList out = detector.afterScan(scanned);
        long allocated = allocatedBytes() - allocatedBefore;

        List<PageRun> pieces = new ArrayList<>();
        out.forEach(r -> pieces.add(r.run()));
        long g = 1L << 22;
        assertEquals(List.of(hole(0, 10), read(10, 10), hole(20, 979), read(999, g - 999), hole(g, 4000),
                read(g + 4000, pages - 100 - g - 4000), hole(pages - 100, 99), read(pages - 1, 1)), pieces);
        assertEquals(pages, out.pages());
        assertEquals(10 + 2 + 2000 + 1, detector.dirtyPages(), "dirty pages inside the run (999 and 1000: 2)");
        assertEquals(pages - (10 + 979 + 4000 + 99) - detector.dirtyPages(), detector.cleanButNewPages());
        assertEquals(List.of("readDirty " + Long.toHexString(X) + "+" + pages, "close", "clear"), kernel.events);
        // a per-page array for the run would be 128 MiB (one long per page); the range lists stay tiny
        assertTrue(detector.rangeBufferBytes() <= 64 * 1024, "range lists: " + detector.rangeBufferBytes() + " bytes");
        if (allocated >= 0) {
            assertTrue(allocated < 8L << 20, "the frozen step allocated " + allocated + " bytes for a 64 GiB run");
        }
    }

    /** Bytes this thread allocated so far, or -1 where the JVM cannot tell. */
    private static long allocatedBytes() {
        if (ManagementFactory.getThreadMXBean() instanceof com.sun.management.ThreadMXBean t
                && t.isThreadAllocatedMemorySupported() && t.isThreadAllocatedMemoryEnabled()) {
            return t.getThreadAllocatedBytes(Thread.currentThread().getId());
        }
        return -1;
    }

    /** Answers soft-dirty ranges directly (as {@code PAGEMAP_SCAN} does), never page by page. */
    private static final class RecordingKernel implements SoftDirty.Kernel {
        final PageRanges dirty;
        final List<String> events = new ArrayList<>();

        RecordingKernel(PageRanges dirty) {
            this.dirty = dirty;
        }

        @Override
        public boolean supported() {
            return true;
        }

        @Override
        public SoftDirty.Entries open(int pid) {
            return new SoftDirty.Entries() {
                @Override
                public void read(long address, long[] into, int count) {
                    throw new AssertionError("read page by page: address=0x" + Long.toHexString(address) + " count="
                            + count);
                }

                @Override
                public void readDirty(long start, long end, PageRanges into) {
                    events.add("readDirty " + Long.toHexString(start) + "+" + (end - start) / P);
                    into.addAll(dirty, start, end);
                }

                @Override
                public void close() {
                    events.add("close");
                }
            };
        }

        @Override
        public void clear(int pid) {
            events.add("clear");
        }
    }

    @Test
    void theDefaultReadDirtyMergesPerPageEntriesIntoRanges() {
        // a per-page test double: entries from a pattern, read in blocks of at most 8192
        List<String> reads = new ArrayList<>();
        SoftDirty.Entries perPage = new SoftDirty.Entries() {
            @Override
            public void read(long address, long[] into, int count) {
                reads.add((address - X) / P + "+" + count);
                for (int i = 0; i < count; i++) {
                    long page = (address - X) / P + i;
                    into[i] = page % 100 < 3 || (page >= 8190 && page < 8194) ? SoftDirty.PM_SOFT_DIRTY : 0;
                }
            }

            @Override
            public void close() {
            }
        };
        PageRanges out = new PageRanges();
        perPage.readDirty(X, X + 10_000 * P, out);
        assertEquals(List.of("0+8192", "8192+1808"), reads);
        assertEquals(101, out.size(), "100 ranges of 3 pages, and 8190..8194 across the block boundary: " + out);
        assertEquals(300 + 4, out.pages());
        assertEquals(ranges(8190, 8194).start(0), out.start(82));
        assertEquals(X + 8194 * P, out.end(82));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> perPage.readDirty(X + 1, X + P, out));
        assertTrue(e.getMessage().contains("is not a page-aligned range"), e.getMessage());
    }

    @Test
    void pageRangesKeepOrderAndClip() {
        PageRanges r = ranges(0, 2, 5, 9, 20, 21);
        assertEquals(3, r.size());
        assertEquals(7, r.pages());
        assertEquals(4, r.pagesWithin(X + P, X + 8 * P), "1 of the first, 3 of the second");
        assertEquals(ranges(1, 2, 5, 8), new PageRanges().addAll(r, X + P, X + 8 * P));
        assertEquals(0, r.firstEndingAfter(X));
        assertEquals(1, r.firstEndingAfter(X + 2 * P));
        assertEquals(3, r.firstEndingAfter(X + 21 * P));
        IllegalArgumentException order = assertThrows(IllegalArgumentException.class, () -> r.add(X + 20 * P, X + 30 * P));
        assertTrue(order.getMessage().contains("ranges must be added in ascending order"), order.getMessage());
        assertThrows(IllegalArgumentException.class, () -> r.add(X + 30 * P + 1, X + 31 * P));
        assertEquals("PageRanges[0x7f0000000000-0x7f0000002000]", ranges(0, 2).toString());
        r.clear();
        assertEquals(0, r.size());
    }
}
