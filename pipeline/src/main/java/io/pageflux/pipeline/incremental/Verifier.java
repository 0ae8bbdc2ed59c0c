package io.pageflux.pipeline.incremental;

import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.DumpStats;
import io.pageflux.source.LiveChunkReader;
import io.pageflux.source.LiveProcess;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageRun;
import io.pageflux.source.PageScan;
import io.pageflux.source.PagemapId;
import io.pageflux.source.PlannedRun;
import io.pageflux.source.PooledBuffer;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.RegionDecision.ReadVia;
import io.pageflux.source.RegionPolicy;
import io.pageflux.source.ScannerKind;
import io.pageflux.source.Smaps;
import io.pageflux.source.freeze.Freezer;
import io.pageflux.source.freeze.FrozenProcess;
import io.pageflux.source.freeze.KernelWrittenArea;
import io.pageflux.source.freeze.RunList;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Checks that an image directory — with its whole parent chain resolved — equals the live memory of a
 * process, byte for byte, and that it is complete: every page CRIU's pre-dump selection picks now is in
 * the image. Meaningful on a target that does not change meanwhile: give it a {@link Freezer} (the
 * target is frozen for the check and thawed after, also on failure), or pass {@code null} when the
 * caller already holds the target still.
 *
 * <p>Bytes the kernel writes by itself ({@link KernelWrittenArea}: each thread's {@code struct rseq}, updated
 * whenever the thread changes CPU) are not counted as differences; pages that differed only there are
 * counted separately ({@link VerifyReport#pagesKernelWrittenOnly()}).
 *
 * <p>Live pages are read like a dump reads them ({@code process_vm_readv}, {@code /proc/PID/mem} for
 * unreadable regions) into one small buffer pool; image pages one at a time through {@link ImageChain}.
 * Memory stays constant whatever the sizes.
 */
public final class Verifier {

    /** Mismatches described in the report; all are counted. */
    public static final int MISMATCHES_KEPT = 16;

    private static final int PAGE = PageRun.PAGE_SIZE;

    private Verifier() {
    }

    /**
     * @param dir     the newest dump of the chain
     * @param pid     the live process
     * @param freezer freezes the target for the check, or {@code null} if it is already still
     * @throws ParentDumpException  the directory or its chain is not a usable dump of {@code pid}
     * @throws ProcessGoneException the target is gone
     */
    public static VerifyReport verify(Path dir, int pid, Freezer freezer) {
        return verify(dir, pid, freezer, List.of());
    }

    /**
     * As {@link #verify(Path, int, Freezer)} on a target the caller keeps still, with the areas the kernel
     * writes by itself ({@link FrozenProcess#kernelWritten()} of the caller's freeze).
     */
    public static VerifyReport verifyStill(Path dir, int pid, List<KernelWrittenArea> kernelWritten) {
        return verify(dir, pid, null, kernelWritten);
    }

    private static VerifyReport verify(Path dir, int pid, Freezer freezer, List<KernelWrittenArea> kernelWritten) {
        try (ImageChain chain = ImageChain.open(dir)) {
            PagemapId task = PagemapId.task(pid);
            if (chain.newest().pagemap(task).isEmpty()) {
                String pids = chain.newest().pagemaps().stream().map(PagemapImage::id)
                        .filter(id -> id.kind() == PagemapId.Kind.TASK).map(id -> Long.toString(id.id())).toList()
                        .toString();
                throw new ParentDumpException(dir, "dir=" + dir + " has no " + task.pagemapFileName()
                        + " (it holds task pagemaps of pids " + pids + "): verify it against the pid it was dumped from");
            }
            LiveProcess.attach(pid);
            FrozenProcess frozen = null;
            if (freezer != null) {
                freezer.prepare();
                frozen = freezer.freeze();
            }
            try {
                VerifyReport report = compare(chain, dir, pid, frozen == null ? kernelWritten : frozen.kernelWritten());
                return frozen == null ? report : report.withFrozen(frozen.thaw());
            } finally {
                if (frozen != null) {
                    frozen.thaw();
                }
            }
        }
    }

    private static VerifyReport compare(ImageChain chain, Path dir, int pid, List<KernelWrittenArea> kernelWritten) {
        List<MemoryRegion> regions = Smaps.read(pid);
        Tally tally = new Tally(kernelWritten);
        RunList runs = new RunList();
        for (PagemapImage pm : chain.newest().pagemaps()) {
            for (PagemapImage.Entry e : pm.entries()) {
                plan(pm.id(), e, regions, runs, tally);
            }
        }
        DumpStats stats = new DumpStats();
        // closed at the end: its one huge-page buffer is unmapped then, not at some later GC
        try (BufferPool pool = BufferPool.create(DataSize.ofMebibytes(4), DataSize.ofMebibytes(4));
                LiveChunkReader reader = new LiveChunkReader(runs.iterator(), pid, ReadOptions.MAX_IOVECS, stats)) {
            while (true) {
                PooledBuffer buffer = pool.tryAcquire();
                PageChunk chunk;
                try {
                    chunk = reader.next(buffer);
                } catch (RuntimeException e) {
                    buffer.release();
                    throw e;
                }
                if (chunk == null) {
                    buffer.release();
                    break;
                }
                try {
                    compareChunk(chain, chunk, tally);
                } finally {
                    chunk.release();
                }
            }
        }
        tally.notInMemory += stats.pagesVanished();
        for (long address : stats.vanishedAddresses()) {
            tally.describe(address, null, "not in memory: the page cannot be read any more");
        }
        completeness(chain, pid, regions, tally);
        return new VerifyReport(dir, pid, chain.depth(), tally.compared, tally.fromParents, tally.bytesDiffer,
                tally.notInMemory, tally.notInImage, tally.kernelWrittenOnly, List.copyOf(tally.kept), Duration.ZERO);
    }

    /** Maps an entry to live addresses, split at region boundaries (the read path depends on the region). */
    private static void plan(PagemapId id, PagemapImage.Entry e, List<MemoryRegion> regions, RunList runs, Tally tally) {
        for (long p = 0; p < e.nrPages(); ) {
            long vaddr = e.vaddr() + p * PAGE;
            MemoryRegion r = regionOf(id, vaddr, regions);
            if (r == null) {
                tally.describe(id.kind() == PagemapId.Kind.TASK ? vaddr : -1, id, String.format(
                        "not in memory: vaddr=0x%x is mapped by no region of the process now", vaddr));
                tally.notInMemory++;
                p++;
                continue;
            }
            long address = id.kind() == PagemapId.Kind.TASK ? vaddr : r.start() + (vaddr - r.offset());
            long n = Math.min(e.nrPages() - p, (r.end() - address) / PAGE);
            ReadVia via = r.readable() ? ReadVia.PROCESS_VM_READV : ReadVia.PROC_PID_MEM;
            runs.add(new PlannedRun(new PageRun(address, n, id, vaddr, e.flags()), via));
            p += n;
        }
    }

    private static MemoryRegion regionOf(PagemapId id, long vaddr, List<MemoryRegion> regions) {
        for (MemoryRegion r : regions) {
            if (id.kind() == PagemapId.Kind.TASK) {
                if (r.contains(vaddr)) {
                    return r;
                }
            } else if (r.sharedAnonymous() && r.inode() == id.id() && Long.compareUnsigned(vaddr, r.offset()) >= 0
                    && Long.compareUnsigned(vaddr - r.offset(), r.size()) < 0) {
                return r;
            }
        }
        return null;
    }

    private static void compareChunk(ImageChain chain, PageChunk chunk, Tally tally) {
        ByteBuffer live = chunk.data();
        int offset = 0;
        for (PageRun run : chunk.runs()) {
            for (long p = 0; p < run.pages(); p++) {
                long vaddr = run.pagemapVaddr() + p * PAGE;
                // the runs were planned from the newest pagemap's entries: it lists every one of these pages
                ImageChain.Resolved image = chain.page(run.pagemap(), vaddr).orElseThrow();
                tally.compared++;
                if (image.level() > 0) {
                    tally.fromParents++;
                }
                int at = offset + (int) (p * PAGE);
                ByteBuffer expected = image.bytes();
                int diff = live.slice(at, PAGE).mismatch(expected);
                long pageAddress = run.address() + p * PAGE;
                if (diff >= 0 && tally.onlyKernelWritten(pageAddress, live, at, expected, diff)) {
                    tally.kernelWrittenOnly++;
                } else if (diff >= 0) {
                    tally.bytesDiffer++;
                    tally.describe(run.address() + p * PAGE, run.pagemap(), String.format(
                            "bytes differ at offset %d (live 0x%02x, image 0x%02x from %s)", diff,
                            live.get(at + diff), expected.get(diff),
                            chain.levels().get(image.level()).path().getFileName()));
                }
            }
            offset += (int) run.bytes();
        }
    }

    /** Every page CRIU's pre-dump selection picks now must be listed by the image. */
    private static void completeness(ImageChain chain, int pid, List<MemoryRegion> regions, Tally tally) {
        try (PageScan scan = PageScan.open(pid, regions, RegionPolicy.criuPreDump(), ScannerKind.AUTO, new DumpStats())) {
            while (scan.hasNext()) {
                PageRun run = scan.next().run();
                for (long p = 0; p < run.pages(); p++) {
                    long vaddr = run.pagemapVaddr() + p * PAGE;
                    if (!chain.lists(run.pagemap(), vaddr)) {
                        tally.notInImage++;
                        tally.describe(run.address() + p * PAGE, run.pagemap(), "not in image: present in memory");
                    }
                }
            }
        }
    }

    private static final class Tally {
        final List<KernelWrittenArea> kernelWritten;
        long kernelWrittenOnly;
        long compared;
        long fromParents;
        long bytesDiffer;
        long notInMemory;
        long notInImage;
        final List<String> kept = new ArrayList<>();

        Tally(List<KernelWrittenArea> kernelWritten) {
            this.kernelWritten = kernelWritten;
        }

        /** Whether every byte that differs, from {@code first} on, lies in an area the kernel writes itself. */
        boolean onlyKernelWritten(long pageAddress, ByteBuffer live, int at, ByteBuffer expected, int first) {
            if (kernelWritten.isEmpty()) {
                return false;
            }
            for (int i = first; i < PAGE; i++) {
                if (live.get(at + i) != expected.get(i) && !kernelWrittenByte(pageAddress + i)) {
                    return false;
                }
            }
            return true;
        }

        private boolean kernelWrittenByte(long address) {
            for (KernelWrittenArea a : kernelWritten) {
                if (a.contains(address)) {
                    return true;
                }
            }
            return false;
        }

        void describe(long address, PagemapId id, String what) {
            if (kept.size() < MISMATCHES_KEPT) {
                kept.add((address >= 0 ? String.format("address=0x%x ", address) : "") + (id == null ? "" : id + " ")
                        + what);
            }
        }
    }
}
