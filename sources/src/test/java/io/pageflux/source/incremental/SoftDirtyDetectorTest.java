package io.pageflux.source.incremental;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagefluxException;
import io.pageflux.source.PagemapId;
import io.pageflux.source.PlannedRun;
import io.pageflux.source.RegionDecision.ReadVia;
import io.pageflux.source.freeze.RunList;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The frozen step of soft-dirty change detection against the recorded pagemap fixture, and the choice of method. */
class SoftDirtyDetectorTest {

    private static final long X = 0x7fea1e7f3000L;
    private static final int LAZY = PageFlags.PE_LAZY | PageFlags.PE_PRESENT;
    private static final PagemapId PM = PagemapId.task(7);
    /** The parent below (dump_uptime 42) made the last clear. */
    private static final OptionalLong LAST = OptionalLong.of(42);

    /** Answers from the recorded fixture (16 pages from X); records reads and clears in order. */
    static final class Recorded implements SoftDirty.Kernel {
        final long[] fixture;
        final boolean supported;
        final List<String> events = new ArrayList<>();

        Recorded(long[] fixture, boolean supported) {
            this.fixture = fixture;
            this.supported = supported;
        }

        @Override
        public boolean supported() {
            return supported;
        }

        @Override
        public SoftDirty.Entries open(int pid) {
            return new SoftDirty.Entries() {
                @Override
                public void read(long address, long[] into, int count) {
                    events.add(String.format("read pid=%d 0x%x+%d", pid, address, count));
                    for (int i = 0; i < count; i++) {
                        into[i] = fixture[(int) ((address - X) / 4096) + i];
                    }
                }

                @Override
                public void close() {
                    events.add("close");
                }
            };
        }

        @Override
        public void clear(int pid) {
            events.add("clear pid=" + pid);
        }
    }

    static long[] fixture() throws IOException {
        List<Long> entries = new ArrayList<>();
        try (InputStream in = SoftDirtyDetectorTest.class.getResourceAsStream("softdirty-pagemap.txt")) {
            for (String line : new String(in.readAllBytes(), StandardCharsets.US_ASCII).split("\n")) {
                String value = line.replaceAll("#.*", "").trim();
                if (!value.isEmpty()) {
                    entries.add(Long.parseUnsignedLong(value.substring(2), 16));
                }
            }
        }
        return entries.stream().mapToLong(Long::longValue).toArray();
    }

    /** Digests of the pages {@code from..to} (exclusive) of X, as a parent that cleared the bits. */
    private static PageDigests parent(int from, int to) {
        PageDigests.Builder b = PageDigests.builder();
        for (int p = from; p < to; p++) {
            b.add(PM, X + p * 4096L, 1000 + p);
        }
        return b.build(7, 42).withSoftDirtyCleared(true);
    }

    @Test
    void cleanPagesOfTheParentBecomeHolesThenTheBitsAreCleared() throws IOException {
        Recorded kernel = new Recorded(fixture(), true);
        SoftDirtyDetector detector = new SoftDirtyDetector(parent(0, 15), 7, kernel);
        RunList scanned = new RunList();
        // two runs, as the scan may split a region: pages 0-9 and 10-15
        scanned.add(new PlannedRun(new PageRun(X, 10, PM, X, LAZY), ReadVia.PROCESS_VM_READV));
        scanned.add(new PlannedRun(new PageRun(X + 10 * 4096L, 6, PM, X + 10 * 4096L, LAZY), ReadVia.PROC_PID_MEM));
        RunList out = detector.afterScan(scanned);

        List<PlannedRun> runs = new ArrayList<>();
        out.forEach(runs::add);
        ReadVia vm = ReadVia.PROCESS_VM_READV;
        ReadVia mem = ReadVia.PROC_PID_MEM;
        assertEquals(List.of(
                new PlannedRun(new PageRun(X, 1, PM, X, LAZY), vm),
                new PlannedRun(new PageRun(X + 4096, 3, PM, X + 4096, PageFlags.PE_PARENT), vm),
                new PlannedRun(new PageRun(X + 4 * 4096, 1, PM, X + 4 * 4096, LAZY), vm),
                new PlannedRun(new PageRun(X + 5 * 4096, 3, PM, X + 5 * 4096, PageFlags.PE_PARENT), vm),
                new PlannedRun(new PageRun(X + 8 * 4096, 1, PM, X + 8 * 4096, LAZY), vm),
                new PlannedRun(new PageRun(X + 9 * 4096, 1, PM, X + 9 * 4096, PageFlags.PE_PARENT), vm),
                new PlannedRun(new PageRun(X + 10 * 4096, 2, PM, X + 10 * 4096, PageFlags.PE_PARENT), mem),
                new PlannedRun(new PageRun(X + 12 * 4096, 2, PM, X + 12 * 4096, LAZY), mem),
                new PlannedRun(new PageRun(X + 14 * 4096, 1, PM, X + 14 * 4096, PageFlags.PE_PARENT), mem),
                // clean, but the parent does not have it: read
                new PlannedRun(new PageRun(X + 15 * 4096, 1, PM, X + 15 * 4096, LAZY), mem)), runs);
        assertEquals(16, out.pages());
        assertEquals(5, detector.dirtyPages());
        assertEquals(1, detector.cleanButNewPages());
        assertEquals(List.of(String.format("read pid=7 0x%x+10", X), String.format("read pid=7 0x%x+6", X + 10 * 4096L),
                "close", "clear pid=7"), kernel.events, "the bits are read, then cleared");
        assertTrue(detector.clearedSoftDirty());
        assertTrue(detector.frozenTime().compareTo(detector.lookupTime()) >= 0);
        assertEquals("soft-dirty", detector.method());
    }

    @Test
    void sharedMemoryIsReadWholeWhateverItsBitsSay() throws IOException {
        // the same clean bits and a parent with every page, but of a shared anonymous object: another process
        // sharing it may have written the pages without touching this process's page-table entries
        PagemapId shmem = PagemapId.shmem(4242);
        PageDigests.Builder b = PageDigests.builder();
        for (int p = 0; p < 16; p++) {
            b.add(PM, X + p * 4096L, 1000 + p);
            b.add(shmem, p * 4096L, 2000 + p);
        }
        Recorded kernel = new Recorded(fixture(), true);
        SoftDirtyDetector detector = new SoftDirtyDetector(b.build(7, 42).withSoftDirtyCleared(true), 7, kernel);
        RunList scanned = new RunList();
        PlannedRun shared = new PlannedRun(new PageRun(X, 16, shmem, 0, LAZY), ReadVia.PROCESS_VM_READV);
        scanned.add(shared);
        List<PlannedRun> runs = new ArrayList<>();
        detector.afterScan(scanned).forEach(runs::add);
        assertEquals(List.of(shared), runs, "no hole in shared memory");
        assertTrue(kernel.events.contains("clear pid=7"), "the bits are still cleared: " + kernel.events);
    }

    @Test
    void withoutAParentEveryPageIsReadAndTheBitsAreStillCleared() throws IOException {
        Recorded kernel = new Recorded(fixture(), true);
        SoftDirtyDetector detector = new SoftDirtyDetector(PageDigests.empty(), 7, kernel);
        RunList scanned = new RunList();
        scanned.add(new PlannedRun(new PageRun(X, 16, PM, X, LAZY), ReadVia.PROCESS_VM_READV));
        RunList out = detector.afterScan(scanned);
        assertEquals(1, out.size());
        assertEquals(new PageRun(X, 16, PM, X, LAZY), out.get(0).run());
        assertEquals(5, detector.dirtyPages());
        assertEquals(11, detector.cleanButNewPages());
        assertEquals("clear pid=7", kernel.events.get(kernel.events.size() - 1));
    }

    @Test
    void theMethodIsChosenOncePerIteration() throws IOException {
        Recorded soft = new Recorded(fixture(), true);
        Recorded none = new Recorded(fixture(), false);
        PageDigests cleared = parent(0, 16);
        PageDigests notCleared = cleared.withSoftDirtyCleared(false);

        ChangeDetection.Choice c = ChangeDetection.AUTO.choose(7, soft, true, cleared, "dir=/d1", LAST);
        assertInstanceOf(SoftDirtyDetector.class, c.detector());
        assertEquals(Optional.empty(), c.reason());
        assertInstanceOf(SoftDirtyDetector.class, ChangeDetection.AUTO.choose(7, soft, true, PageDigests.empty(),
                "none", OptionalLong.empty()).detector(), "no parent: soft-dirty reads every page and clears for the next one");

        c = ChangeDetection.AUTO.choose(7, soft, true, notCleared, "dir=/d1", LAST);
        assertInstanceOf(DigestDetector.class, c.detector());
        assertTrue(c.reason().orElseThrow().startsWith("parent dir=/d1 did not clear the soft-dirty bits"), c.reason()
                .toString());
        c = ChangeDetection.SOFT_DIRTY.choose(7, soft, true, notCleared, "dir=/d1", LAST);
        assertInstanceOf(DigestDetector.class, c.detector(), "unsure: digests, and said so");
        assertTrue(c.reason().isPresent());

        c = ChangeDetection.AUTO.choose(7, soft, true, cleared, "dir=/d1", OptionalLong.of(43));
        assertInstanceOf(DigestDetector.class, c.detector(), "another dump cleared the bits since the parent");
        assertEquals("the soft-dirty bits of pid=7 were cleared after parent dir=/d1 (dump_uptime=42) by the dump with"
                + " dump_uptime=43 (a branched chain): page digests used this time; the bits were cleared for the next"
                + " iteration", c.reason().orElseThrow());
        c = ChangeDetection.SOFT_DIRTY.choose(7, soft, true, cleared, "dir=/d1", OptionalLong.empty());
        assertInstanceOf(DigestDetector.class, c.detector(), "a dump cleared them and did not complete");
        assertTrue(c.reason().orElseThrow().startsWith("no record that parent dir=/d1 (dump_uptime=42) made the last"
                + " clear of the soft-dirty bits of pid=7"), c.reason().toString());
        assertInstanceOf(SoftDirtyDetector.class, ChangeDetection.AUTO.choose(7, soft, true, PageDigests.empty(),
                "none", OptionalLong.empty()).detector(), "no parent pages: nothing to be wrong about");

        c = ChangeDetection.AUTO.choose(7, none, true, cleared, "dir=/d1", LAST);
        assertInstanceOf(DigestDetector.class, c.detector());
        assertTrue(c.reason().orElseThrow().contains("built without CONFIG_MEM_SOFT_DIRTY"), c.reason().toString());
        c = ChangeDetection.AUTO.choose(7, soft, false, cleared, "dir=/d1", LAST);
        assertInstanceOf(DigestDetector.class, c.detector());
        assertTrue(c.reason().orElseThrow().startsWith("the target is not frozen for the scan"));

        c = ChangeDetection.DIGEST.choose(7, soft, true, cleared, "dir=/d1", LAST);
        assertInstanceOf(DigestDetector.class, c.detector());
        assertEquals(Optional.empty(), c.reason());
        assertFalse(c.detector().clearedSoftDirty());

        PagefluxException e = assertThrows(ChangeDetection.SoftDirtyUnsupportedException.class,
                () -> ChangeDetection.SOFT_DIRTY.choose(7, none, true, cleared, "dir=/d1", LAST));
        assertTrue(e.getMessage().startsWith("cannot use soft-dirty change detection for pid=7: this kernel ("),
                e.getMessage());
        assertTrue(e.getMessage().endsWith("; use --change-detection digest (or auto), which compares a 64-bit digest"
                + " per page"), e.getMessage());
        e = assertThrows(ChangeDetection.SoftDirtyUnsupportedException.class,
                () -> ChangeDetection.SOFT_DIRTY.choose(7, soft, false, cleared, "dir=/d1", LAST));
        assertTrue(e.getMessage().endsWith(", or --mode pre-dump or dump"), e.getMessage());

        assertEquals(ChangeDetection.SOFT_DIRTY, ChangeDetection.fromCli("soft-dirty"));
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class,
                () -> ChangeDetection.fromCli("softdirty"));
        assertEquals("unknown change detection 'softdirty': use auto, soft-dirty or digest", bad.getMessage());
    }

    @Test
    void theLedgerRecordsWhichCompletedDumpClearedLast(@TempDir Path dir) throws Exception {
        try (SampleProcess target = SampleProcess.start()) {
            int pid = target.pid();
            SoftDirtyLedger ledger = SoftDirtyLedger.at(dir.resolve("ledger"));
            assertEquals(OptionalLong.empty(), ledger.lastClear(pid), "nothing recorded");
            Recorded kernel = new Recorded(fixture(), true);
            SoftDirty.Kernel tracked = ledger.tracking(kernel);
            tracked.clear(pid);
            assertEquals(List.of("clear pid=" + pid), kernel.events);
            assertEquals(OptionalLong.empty(), ledger.lastClear(pid), "cleared by a dump that has not completed");
            try (var files = Files.list(ledger.dir())) {
                Path file = files.findFirst().orElseThrow();
                assertTrue(file.getFileName().toString().startsWith("soft-dirty-" + pid + "-"), file.toString());
                assertEquals("clearing\n", Files.readString(file));
            }
            ledger.completed(pid, 1234);
            assertEquals(OptionalLong.of(1234), ledger.lastClear(pid));
            tracked.clear(pid);
            assertEquals(OptionalLong.empty(), ledger.lastClear(pid), "the next clear forgets the completed one");
        }
        assertEquals(OptionalLong.empty(), SoftDirtyLedger.at(dir).lastClear(999_999_999), "no such process");
    }

    @Test
    void theLedgerRecordIsWrittenBeforeTheFreezeNotWhileFrozen(@TempDir Path dir) throws Exception {
        try (SampleProcess target = SampleProcess.start()) {
            int pid = target.pid();
            SoftDirtyLedger ledger = SoftDirtyLedger.at(dir.resolve("ledger"));
            List<String> clears = new ArrayList<>();
            SoftDirty.Kernel real = new SoftDirty.Kernel() {
                @Override
                public boolean supported() {
                    return true;
                }

                @Override
                public SoftDirty.Entries open(int p) {
                    return SoftDirty.kernel().open(p);
                }

                @Override
                public void clear(int p) {
                    clears.add("clear pid=" + p + " ledger=" + ledger.lastClear(p));
                }
            };
            ledger.completed(pid, 41);
            SoftDirty.Kernel tracked = ledger.tracking(real);
            // configuring the detector (before any freeze) records the coming clear; nothing is cleared yet
            new SoftDirtyDetector(PageDigests.empty(), pid, tracked).configure(
                    io.pageflux.source.freeze.FreezingSource.of(pid, io.pageflux.source.freeze.Freezer.ptrace(pid),
                            io.pageflux.source.freeze.FreezeMode.PRE_DUMP));
            assertEquals(OptionalLong.empty(), ledger.lastClear(pid), "clearing is on record before the freeze");
            assertEquals(List.of(), clears);
            Path record;
            try (var files = Files.list(ledger.dir())) {
                record = files.filter(f -> f.getFileName().toString().startsWith("soft-dirty-")).findFirst().orElseThrow();
            }
            assertEquals("clearing\n", Files.readString(record));
            Object before = Files.readAttributes(record, java.nio.file.attribute.BasicFileAttributes.class).fileKey();
            Thread.sleep(20); // a rewrite would show in the modification time too
            java.nio.file.attribute.FileTime written = Files.getLastModifiedTime(record);
            // the frozen clear writes nothing: the prepared record is still the same file
            tracked.clear(pid);
            assertEquals(List.of("clear pid=" + pid + " ledger=OptionalLong.empty"), clears);
            assertEquals(before, Files.readAttributes(record, java.nio.file.attribute.BasicFileAttributes.class)
                    .fileKey());
            assertEquals(written, Files.getLastModifiedTime(record));
            // one prepared record covers one clear, and a record replaced in between (another dump completing) is
            // written again: the clear never hides behind someone else's "cleared"
            ledger.completed(pid, 42);
            tracked.clear(pid);
            assertEquals("clear pid=" + pid + " ledger=OptionalLong.empty", clears.get(1));
            tracked.prepareClear(pid);
            ledger.completed(pid, 43);
            tracked.clear(pid);
            assertEquals("clear pid=" + pid + " ledger=OptionalLong.empty", clears.get(2));
            assertEquals(OptionalLong.empty(), ledger.lastClear(pid));
        }
    }

    @Test
    void theRealKernelsBitsAgreeBetweenTheIoctlAndThePagemapFile() throws Exception {
        try (SampleProcess target = SampleProcess.start()) {
            long a = target.address(Region.A);
            long[] viaIoctl = new long[Region.A.pages()];
            long[] viaFile = new long[Region.A.pages()];
            try (SoftDirty.Entries pagemap = SoftDirty.kernel().open(target.pid())) {
                pagemap.read(a, viaIoctl, viaIoctl.length);
            }
            try (SoftDirty.Entries pagemap = SoftDirty.open(target.pid(), false)) {
                pagemap.read(a, viaFile, viaFile.length);
            }
            for (int p = 0; p < viaFile.length; p++) {
                assertTrue((viaFile[p] & SoftDirty.PM_PRESENT) != 0, "A page " + p + " is present");
                // on a kernel with soft-dirty, pages never cleared are dirty; here bit 55 is never set
                assertEquals(SoftDirty.supported(), (viaFile[p] & SoftDirty.PM_SOFT_DIRTY) != 0, "A page " + p);
                assertEquals(viaFile[p] & SoftDirty.PM_SOFT_DIRTY, viaIoctl[p], "A page " + p);
            }
        }
        PagefluxException gone = assertThrows(PagefluxException.class, () -> SoftDirty.kernel().open(999_999_999));
        assertTrue(gone.getMessage().startsWith("cannot open the pagemap to read soft-dirty bits: pid=999999999"
                + " file=/proc/999999999/pagemap"), gone.getMessage());
    }
}
