package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.pageflux.nativeio.Errno;
import io.pageflux.nativeio.NativeCallException;
import io.pageflux.nativeio.PagemapScanner;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The native pagemap bindings against the sample target's known pages (needs root for PFNs). */
class PagemapScannerTest {

    private static final int PAGE = PageRun.PAGE_SIZE;
    private static final long PRESENT = PagemapScanner.PAGE_IS_PRESENT;
    private static final long PFNZERO = PagemapScanner.PAGE_IS_PFNZERO;

    @Test
    void ioctlNumberIsTheKernelsPagemapScan() {
        // linux/fs.h: #define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg), sizeof = 12 u64 = 96 -> 0xc0606610
        assertEquals(0xc0606610L, PagemapScanner.PAGEMAP_SCAN);
        assertEquals(12 * 8, PagemapScanner.PM_SCAN_ARG_SIZE);
    }

    @Test
    void zeroPagePfnLearnedFromOurOwnProcessMatchesTheTargetsReadOnlyPages() throws Exception {
        long zero = PagemapScanner.zeroPagePfn();
        assumeTrue(zero > 0, "PFNs are hidden without CAP_SYS_ADMIN");
        try (SampleProcess sample = SampleProcess.start();
             PagemapScanner pm = PagemapScanner.open(sample.pid(), 4, 64)) {
            assertEquals(32, pm.readEntries(sample.address(Region.B), 32));
            for (int p = 0; p < 32; p++) {
                long e = pm.entry(p);
                assertTrue((e & PagemapScanner.PM_PRESENT) != 0, "B page " + p + " present");
                long pfn = e & PagemapScanner.PM_PFN_MASK;
                if (p % 2 == 1) {
                    assertEquals(zero, pfn, "B's odd page " + p + " maps the shared zero page");
                    assertTrue(PagemapScanner.isZeroPfn(pfn));
                } else {
                    assertNotEquals(zero, pfn, "B's even page " + p + " has its own frame");
                    assertTrue(!PagemapScanner.isZeroPfn(pfn));
                }
            }
        }
    }

    @Test
    void ioctlReportsPfnZeroExactlyOnTheOddPagesOfB() throws Exception {
        try (SampleProcess sample = SampleProcess.start();
             PagemapScanner pm = PagemapScanner.open(sample.pid(), 64, 1)) {
            long b = sample.address(Region.B);
            int n = pm.scan(b, b + 32L * PAGE, 0, 0, PRESENT, PRESENT | PFNZERO);
            assertEquals(b + 32L * PAGE, pm.walkEnd());
            // categories differ page by page, so every page is its own range
            assertEquals(32, n);
            for (int p = 0; p < 32; p++) {
                assertEquals(b + (long) p * PAGE, pm.regionStart(p));
                assertEquals(b + (long) (p + 1) * PAGE, pm.regionEnd(p));
                assertEquals(p % 2 == 1 ? PRESENT | PFNZERO : PRESENT, pm.regionCategories(p), "page " + p);
            }
        }
    }

    @Test
    void fullVectorStopsAtWalkEndAndTheNextCallContinues() throws Exception {
        try (SampleProcess sample = SampleProcess.start();
             PagemapScanner pm = PagemapScanner.open(sample.pid(), 3, 1)) {
            long b = sample.address(Region.B);
            long end = b + 32L * PAGE;
            List<Long> starts = new ArrayList<>();
            long cursor = b;
            int calls = 0;
            while (cursor < end) {
                int n = pm.scan(cursor, end, PFNZERO, PFNZERO, PRESENT, PRESENT);
                assertTrue(n <= 3);
                for (int i = 0; i < n; i++) {
                    assertEquals(pm.regionStart(i) + PAGE, pm.regionEnd(i), "one even page per range");
                    starts.add(pm.regionStart(i));
                }
                assertTrue(pm.walkEnd() > cursor, "progress");
                cursor = pm.walkEnd();
                calls++;
            }
            List<Long> expected = new ArrayList<>();
            for (int p = 0; p < 32; p += 2) {
                expected.add(b + (long) p * PAGE);
            }
            assertEquals(expected, starts);
            assertEquals(6, calls, "16 ranges, 3 per call");
        }
    }

    @Test
    void sharedAnonymousPagesCarryTheFileBitInBothInterfaces() throws Exception {
        try (SampleProcess sample = SampleProcess.start();
             PagemapScanner pm = PagemapScanner.open(sample.pid(), 8, 8)) {
            long d = sample.address(Region.D);
            assertEquals(8, pm.readEntries(d, 8));
            for (int p = 0; p < 8; p++) {
                long e = pm.entry(p);
                assertTrue((e & PagemapScanner.PM_PRESENT) != 0 && (e & PagemapScanner.PM_FILE_OR_SHARED_ANON) != 0,
                        "D page " + p + " entry=0x" + Long.toHexString(e));
            }
            int n = pm.scan(d, d + 8L * PAGE, 0, 0, PRESENT, PRESENT | PagemapScanner.PAGE_IS_FILE);
            assertEquals(1, n);
            assertEquals(PRESENT | PagemapScanner.PAGE_IS_FILE, pm.regionCategories(0));
            assertEquals(d + 8L * PAGE, pm.regionEnd(0));
        }
    }

    @Test
    void untouchedRegionHasNoPresentPage() throws Exception {
        try (SampleProcess sample = SampleProcess.start();
             PagemapScanner pm = PagemapScanner.open(sample.pid(), 8, 8)) {
            long e = sample.address(Region.E);
            assertEquals(0, pm.scan(e, e + 8L * PAGE, 0, 0, PRESENT | PagemapScanner.PAGE_IS_SWAPPED, PRESENT));
            assertEquals(8, pm.readEntries(e, 8));
            for (int p = 0; p < 8; p++) {
                assertEquals(0, pm.entry(p) & (PagemapScanner.PM_PRESENT | PagemapScanner.PM_SWAPPED));
            }
        }
    }

    @Test
    void openingTheTaskOfAPidThatCannotExistFailsWithEnoent() throws Exception {
        int pid = PageScanTest.impossiblePid();
        NativeCallException e = assertThrows(NativeCallException.class, () -> PagemapScanner.open(pid, 1, 1));
        assertEquals(Errno.ENOENT, e.errno());
        assertTrue(e.getMessage().contains("pid=" + pid), e.getMessage());
        assertTrue(e.getMessage().contains("path=/proc/" + pid + "/pagemap"), e.getMessage());
    }

    @Test
    void closedScannerRefusesCalls() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            PagemapScanner pm = PagemapScanner.open(sample.pid(), 1, 1);
            pm.close();
            pm.close();
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> pm.readEntries(sample.address(Region.A), 1));
            assertTrue(e.getMessage().contains("pid=" + sample.pid()), e.getMessage());
        }
    }
}
