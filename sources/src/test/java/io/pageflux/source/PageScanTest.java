package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.RegionDecision.ReadVia;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** {@link PageScan} over a live {@link SampleProcess}, with both scanners. */
class PageScanTest {

    private static final int PAGE = PageRun.PAGE_SIZE;

    /**
     * pid_max itself is never handed out (pids are below it), so /proc/pid_max never exists. Read with
     * {@link ProcStat#readProcFile}: {@code Files.readString} truncates sysctl files (pid_max reads as "3").
     */
    static int impossiblePid() throws IOException {
        return Integer.parseInt(ProcStat.readProcFile(Path.of("/proc/sys/kernel/pid_max")).strip());
    }

    static List<PlannedRun> scan(int pid, List<MemoryRegion> regions, RegionPolicy policy, ScannerKind kind,
                                 DumpStats stats) {
        List<PlannedRun> runs = new ArrayList<>();
        try (PageScan scan = PageScan.open(pid, regions, policy, kind, stats)) {
            scan.forEachRemaining(runs::add);
            assertFalse(scan.hasNext());
            assertThrows(NoSuchElementException.class, scan::next);
        }
        return runs;
    }

    /** Page address -> the run page that covers it (one entry per page). */
    private static Map<Long, PlannedRun> byPage(List<PlannedRun> runs) {
        Map<Long, PlannedRun> pages = new TreeMap<>(Long::compareUnsigned);
        for (PlannedRun r : runs) {
            for (long p = 0; p < r.run().pages(); p++) {
                assertEquals(null, pages.put(r.run().address() + p * PAGE, r), "page covered twice: " + r);
            }
        }
        return pages;
    }

    private static MemoryRegion regionOf(List<MemoryRegion> regions, long address) {
        return regions.stream().filter(r -> r.contains(address)).findFirst()
                .orElseThrow(() -> new AssertionError("no region holds 0x" + Long.toHexString(address)));
    }

    @Test
    void bothScannersFindExactlyTheSamplesDumpablePagesInAFullDump() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            int pid = sample.pid();
            List<MemoryRegion> regions = Smaps.read(pid);
            DumpStats ioctlStats = new DumpStats();
            DumpStats fileStats = new DumpStats();
            List<PlannedRun> ioctl = scan(pid, regions, RegionPolicy.criuFullDump(), ScannerKind.PAGEMAP_SCAN, ioctlStats);
            List<PlannedRun> file = scan(pid, regions, RegionPolicy.criuFullDump(), ScannerKind.PAGEMAP_FILE, fileStats);
            assertEquals(ioctl, file, "the ioctl and the pagemap file select the same runs");

            checkOrderAndRegionBounds(ioctl, regions);
            Map<Long, PlannedRun> pages = byPage(ioctl);
            int task = pid;

            // A: all 64 pages, private anonymous -> lazy
            for (int p = 0; p < 64; p++) {
                PlannedRun r = pages.get(sample.address(Region.A) + (long) p * PAGE);
                assertNotNull(r, "A page " + p);
                assertEquals(PagemapId.task(task), r.run().pagemap());
                assertEquals(PageFlags.PE_PRESENT | PageFlags.PE_LAZY, r.run().flags());
                assertEquals(ReadVia.PROCESS_VM_READV, r.via());
            }
            // B: the even pages only; the odd ones map the zero page
            for (int p = 0; p < 32; p++) {
                PlannedRun r = pages.get(sample.address(Region.B) + (long) p * PAGE);
                assertEquals(p % 2 == 0, r != null, "B page " + p);
            }
            // C: PROT_NONE, read through /proc/PID/mem in a full dump
            for (int p = 0; p < 16; p++) {
                PlannedRun r = pages.get(sample.address(Region.C) + (long) p * PAGE);
                assertNotNull(r, "C page " + p);
                assertEquals(ReadVia.PROC_PID_MEM, r.via());
                assertEquals(PageFlags.PE_PRESENT | PageFlags.PE_LAZY, r.run().flags());
            }
            // D: shared anonymous, into pagemap-shmem-<inode> at offsets from 0, not lazy
            long d = sample.address(Region.D);
            MemoryRegion dRegion = regionOf(regions, d);
            assertTrue(dRegion.inode() != 0);
            for (int p = 0; p < 8; p++) {
                PlannedRun r = pages.get(d + (long) p * PAGE);
                assertNotNull(r, "D page " + p);
                assertEquals(PagemapId.shmem(dRegion.inode()), r.run().pagemap());
                assertEquals((long) p * PAGE, r.run().pagemapVaddr() + (d + (long) p * PAGE - r.run().address()));
                assertEquals(PageFlags.PE_PRESENT, r.run().flags());
            }
            PlannedRun dRun = pages.get(d);
            assertEquals(new PageRun(d, 8, PagemapId.shmem(dRegion.inode()), 0, PageFlags.PE_PRESENT), dRun.run());
            // E: never touched
            for (int p = 0; p < 8; p++) {
                assertFalse(pages.containsKey(sample.address(Region.E) + (long) p * PAGE), "E page " + p);
            }
            // [vdso]: every page, PE_PRESENT only
            MemoryRegion vdso = regions.stream().filter(r -> r.path().equals("[vdso]")).findFirst().orElseThrow();
            PlannedRun vdsoRun = pages.get(vdso.start());
            assertEquals(new PageRun(vdso.start(), vdso.pages(), PagemapId.task(task), vdso.start(), PageFlags.PE_PRESENT),
                    vdsoRun.run());
            // nothing of [vvar] or shared file mappings
            for (MemoryRegion r : regions) {
                if (r.path().startsWith("[vvar") || (r.shared() && !r.sharedAnonymous())) {
                    assertFalse(pages.containsKey(r.start()), "must not dump " + r);
                }
            }

            long total = LiveReadSupport.pages(ioctl);
            for (DumpStats stats : List.of(ioctlStats, fileStats)) {
                assertEquals(total, stats.pagesPlanned(), "the counting pass predicts the iteration");
                assertEquals(ioctl.size(), stats.runs());
                assertEquals(regions.size(), stats.regionsSeen());
                long skipped = stats.regionsSkipped().values().stream().mapToLong(Long::longValue).sum();
                assertEquals(regions.size(), stats.regionsDumped() + skipped);
                long vvars = regions.stream().filter(r -> r.path().equals("[vvar]")).count();
                assertEquals(vvars, stats.regionsSkipped().getOrDefault("[vvar]: kernel data, never dumped", 0L));
            }
        }
    }

    @Test
    void preDumpSkipsTheProtNoneRegionAndKeepsTheRest() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            int pid = sample.pid();
            List<MemoryRegion> regions = Smaps.read(pid);
            DumpStats stats = new DumpStats();
            List<PlannedRun> ioctl = scan(pid, regions, RegionPolicy.criuPreDump(), ScannerKind.PAGEMAP_SCAN, stats);
            List<PlannedRun> file = scan(pid, regions, RegionPolicy.criuPreDump(), ScannerKind.PAGEMAP_FILE, new DumpStats());
            assertEquals(ioctl, file);
            Map<Long, PlannedRun> pages = byPage(ioctl);
            for (int p = 0; p < 16; p++) {
                assertFalse(pages.containsKey(sample.address(Region.C) + (long) p * PAGE), "C page " + p);
            }
            for (int p = 0; p < 64; p++) {
                assertTrue(pages.containsKey(sample.address(Region.A) + (long) p * PAGE), "A page " + p);
            }
            assertEquals(16, java.util.stream.IntStream.range(0, 32)
                    .filter(p -> pages.containsKey(sample.address(Region.B) + (long) p * PAGE)).count());
            assertTrue(pages.containsKey(sample.address(Region.D)));
            assertTrue(ioctl.stream().allMatch(r -> r.via() == ReadVia.PROCESS_VM_READV));
            assertEquals(1L, stats.regionsSkipped().get(CriuRegionPolicies.PROT_NONE_PRE_DUMP));
        }
    }

    @ParameterizedTest
    @EnumSource(value = ScannerKind.class, names = {"PAGEMAP_SCAN", "PAGEMAP_FILE"})
    void withoutTheCountingPassThePlannedPagesGrowRunByRunToTheSameTotal(ScannerKind kind) throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            List<MemoryRegion> regions = Smaps.read(sample.pid());
            List<PlannedRun> counted = scan(sample.pid(), regions, RegionPolicy.criuFullDump(), kind, new DumpStats());
            DumpStats stats = new DumpStats();
            try (PageScan scan = PageScan.open(sample.pid(), regions, RegionPolicy.criuFullDump(), kind, stats, false)) {
                assertEquals(0, stats.pagesPlanned(), "no counting pass: nothing planned before the iteration");
                assertEquals(0, scan.plannedPages());
                List<PlannedRun> runs = new ArrayList<>();
                long sofar = 0;
                while (scan.hasNext()) {
                    PlannedRun run = scan.next();
                    runs.add(run);
                    sofar += run.run().pages();
                    assertEquals(sofar, stats.pagesPlanned(), "after run " + run);
                }
                assertEquals(counted, runs, "the same runs with and without the counting pass");
                assertEquals(LiveReadSupport.pages(counted), scan.plannedPages());
                assertEquals(LiveReadSupport.pages(counted), stats.pagesPlanned());
            }
        }
    }

    @Test
    void autoUsesTheIoctlOnThisKernelAndAgreesWithIt() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            List<MemoryRegion> regions = Smaps.read(sample.pid());
            try (PageScan auto = PageScan.open(sample.pid(), regions, RegionPolicy.criuFullDump(), ScannerKind.AUTO,
                    new DumpStats())) {
                assertEquals(ScannerKind.PAGEMAP_SCAN, auto.kind());
                List<PlannedRun> runs = new ArrayList<>();
                auto.forEachRemaining(runs::add);
                assertEquals(scan(sample.pid(), regions, RegionPolicy.criuFullDump(), ScannerKind.PAGEMAP_FILE,
                        new DumpStats()), runs);
                assertEquals(LiveReadSupport.pages(runs), auto.plannedPages());
            }
        }
    }

    @Test
    void failingRegionThrowsWhenReachedAfterTheRunsBeforeIt() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            int pid = sample.pid();
            List<MemoryRegion> regions = Smaps.read(pid);
            MemoryRegion a = regionOf(regions, sample.address(Region.A));
            RegionPolicy failOnA = r -> r.equals(a) ? RegionDecision.fail("test: refuse A")
                    : RegionPolicy.criuFullDump().decide(r);
            DumpStats stats = new DumpStats();
            List<PlannedRun> before = new ArrayList<>();
            try (PageScan scan = PageScan.open(pid, regions, failOnA, ScannerKind.PAGEMAP_SCAN, stats)) {
                UnsupportedMappingException e = assertThrows(UnsupportedMappingException.class,
                        () -> scan.forEachRemaining(before::add));
                assertEquals(pid, e.pid());
                assertEquals(a, e.region());
                assertTrue(e.getMessage().contains("pid=" + pid), e.getMessage());
                assertTrue(e.getMessage().contains(Long.toHexString(a.start())), e.getMessage());
                assertTrue(e.getMessage().contains("reason=test: refuse A"), e.getMessage());
            }
            assertFalse(before.isEmpty(), "the regions below A were scanned first");
            assertTrue(before.stream().allMatch(r -> Long.compareUnsigned(r.run().end(), a.start()) <= 0));
            long below = regions.stream().filter(r -> Long.compareUnsigned(r.start(), a.start()) <= 0).count();
            assertEquals(below, stats.regionsSeen());
        }
    }

    @Test
    void customPolicyOnlyHeap() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            List<MemoryRegion> regions = Smaps.read(sample.pid());
            RegionPolicy onlyA = r -> r.contains(sample.address(Region.A))
                    ? RegionDecision.dump("A", ReadVia.PROCESS_VM_READV, RegionDecision.PageSelection.ALL, false)
                    : RegionDecision.skip("not A");
            List<PlannedRun> runs = scan(sample.pid(), regions, onlyA, ScannerKind.PAGEMAP_FILE, new DumpStats());
            MemoryRegion a = regionOf(regions, sample.address(Region.A));
            assertEquals(List.of(new PlannedRun(new PageRun(a.start(), a.pages(), PagemapId.task(sample.pid()),
                    a.start(), PageFlags.PE_PRESENT), ReadVia.PROCESS_VM_READV)), runs);
        }
    }

    @Test
    void processThatExitsBeforeTheScanIsGone() throws Exception {
        List<MemoryRegion> regions;
        int pid;
        try (SampleProcess sample = SampleProcess.start()) {
            pid = sample.pid();
            regions = Smaps.read(pid);
        }
        for (ScannerKind kind : ScannerKind.values()) {
            ProcessGoneException e = assertThrows(ProcessGoneException.class,
                    () -> PageScan.open(pid, regions, RegionPolicy.criuFullDump(), kind, new DumpStats()), kind.name());
            assertEquals(pid, e.pid());
        }
    }

    @ParameterizedTest
    @EnumSource(value = ScannerKind.class, names = {"PAGEMAP_SCAN", "PAGEMAP_FILE"})
    void processThatExitsDuringTheScanIsGone(ScannerKind kind) throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            int pid = sample.pid();
            List<MemoryRegion> regions = Smaps.read(pid);
            try (PageScan scan = PageScan.open(pid, regions, RegionPolicy.criuFullDump(), kind, new DumpStats())) {
                assertTrue(scan.hasNext());
                scan.next();
                sample.kill();
                ProcessGoneException e = assertThrows(ProcessGoneException.class, () -> {
                    while (scan.hasNext()) {
                        scan.next();
                    }
                });
                assertEquals(pid, e.pid());
            }
        }
    }

    @Test
    void pidThatCannotExist() throws Exception {
        int pid = impossiblePid();
        ProcessGoneException e = assertThrows(ProcessGoneException.class,
                () -> PageScan.open(pid, List.of(), RegionPolicy.criuFullDump(), ScannerKind.AUTO, new DumpStats()));
        assertTrue(e.getMessage().contains("pid=" + pid), e.getMessage());
    }

    @Test
    void closedScanRefusesToIterate() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            PageScan scan = PageScan.open(sample.pid(), Smaps.read(sample.pid()), RegionPolicy.criuFullDump(),
                    ScannerKind.AUTO, new DumpStats());
            scan.close();
            IllegalStateException e = assertThrows(IllegalStateException.class, scan::hasNext);
            assertTrue(e.getMessage().contains("pid=" + sample.pid()));
        }
    }

    /** Ascending, non-overlapping, never across a region boundary, always inside a region. */
    private static void checkOrderAndRegionBounds(List<PlannedRun> runs, List<MemoryRegion> regions) {
        long previousEnd = 0;
        for (PlannedRun r : runs) {
            assertTrue(Long.compareUnsigned(r.run().address(), previousEnd) >= 0, "ascending: " + r);
            MemoryRegion region = regionOf(regions, r.run().address());
            assertTrue(Long.compareUnsigned(r.run().end(), region.end()) <= 0, r + " stays inside " + region);
            previousEnd = r.run().end();
        }
    }
}
