package io.pageflux.source;

import io.pageflux.nativeio.NativeCallException;
import io.pageflux.nativeio.PagemapScanner;
import io.pageflux.source.RegionDecision.PageSelection;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.Objects;

/**
 * The runs of pages a dump reads, computed lazily region by region in ascending address order.
 * Single-threaded; close it to release the pagemap file descriptor.
 *
 * <p>Each region is decided once by the {@link RegionPolicy}. Within a dumped region the runs are maximal
 * contiguous ranges of selected pages (criu-formats.md §3); runs never span two regions (joining
 * neighbours is the sink's business). A run of a shared anonymous region belongs to
 * {@code PagemapId.shmem(inode)} at {@code offset + (address - start)}, every other run to
 * {@code PagemapId.task(pid)} at its own address; flags are {@code PE_PRESENT}, plus {@code PE_LAZY}
 * when the decision says so.
 *
 * <p>Memory is constant whatever the size of the address space: one native vector of
 * {@value #VEC_CAPACITY} ranges (ioctl) or {@value #ENTRY_CAPACITY} entries (pagemap file) is reused, and
 * only the next run is held. {@link #open} makes one counting pass with the same buffers so that
 * {@link DumpStats#pagesPlanned()} knows the total before the first run is read; a running target may
 * change meanwhile, so the total is an estimate of what the iteration then yields. The pass walks every
 * page table entry once more (about 3.5 ms per GiB resident with PAGEMAP_SCAN), so a caller that needs
 * no total up front (no progress bar) opens the scan without it: each run then adds its pages to the
 * planned count as the iteration selects it.
 *
 * <p>Stats: each region the iteration reaches counts as seen, and as dumped or skipped (by reason);
 * each run returned counts as scanned.
 */
public final class PageScan implements Iterator<PlannedRun>, AutoCloseable {

    /** Ranges one PAGEMAP_SCAN call may return (24 bytes each). */
    static final int VEC_CAPACITY = 512;
    /** Pagemap entries one pread may return (8 bytes each: 32 MiB of address space per call). */
    static final int ENTRY_CAPACITY = 8192;

    private final int pid;
    private final List<MemoryRegion> regions;
    private final RegionDecision[] decisions;
    private final DumpStats stats;
    private final PagemapScanner pagemap;
    private final PageRangeWalker walker;
    private final boolean counted;
    private long plannedPages;

    private int index = -1;
    private MemoryRegion region;
    private RegionDecision decision;
    private boolean walking;
    private PlannedRun lookahead;
    private boolean closed;

    private PageScan(int pid, List<MemoryRegion> regions, RegionDecision[] decisions, DumpStats stats,
                     PagemapScanner pagemap, PageRangeWalker walker, boolean count) {
        this.pid = pid;
        this.regions = regions;
        this.decisions = decisions;
        this.stats = stats;
        this.pagemap = pagemap;
        this.walker = walker;
        this.counted = count;
        this.plannedPages = count ? countPlanned() : 0;
    }

    /** {@link #open(int, List, RegionPolicy, ScannerKind, DumpStats, boolean)} with the counting pass. */
    public static PageScan open(int pid, List<MemoryRegion> regions, RegionPolicy policy, ScannerKind kind,
                                DumpStats stats) {
        return open(pid, regions, policy, kind, stats, true);
    }

    /**
     * Decides every region with {@code policy}, opens {@code /proc/PID/pagemap} and counts the pages the scan
     * will return (added to {@code stats} as planned pages).
     *
     * @param regions the target's regions (e.g. {@link Smaps#read(int)}); sorted here if they are not
     * @param kind    how pages are found: {@link ScannerKind#AUTO} uses PAGEMAP_SCAN and falls back to the
     *                pagemap file when the kernel lacks the ioctl (ENOTTY / EINVAL)
     * @param count   make the counting pass now (see the class description); without it the planned pages
     *                are added run by run as the iteration returns them
     * @throws ProcessGoneException      the process does not exist (any more)
     * @throws PermissionDeniedException the pagemap may not be read (needs CAP_SYS_PTRACE)
     * @throws PagefluxException         {@link ScannerKind#PAGEMAP_SCAN} on a kernel without the ioctl
     * @throws IllegalArgumentException  regions overlap
     */
    public static PageScan open(int pid, List<MemoryRegion> regions, RegionPolicy policy, ScannerKind kind,
                                DumpStats stats, boolean count) {
        Objects.requireNonNull(policy, "policy");
        Objects.requireNonNull(kind, "kind");
        Objects.requireNonNull(stats, "stats");
        List<MemoryRegion> sorted = new ArrayList<>(regions);
        // a plain lambda, not Comparator.comparing(MemoryRegion::start, Long::compareUnsigned): that one makes a
        // cold JVM spin a method-handle adapter class (~2 ms before a CLI dump's first copy); this one is archived
        sorted.sort((a, b) -> Long.compareUnsigned(a.start(), b.start()));
        RegionDecision[] decisions = new RegionDecision[sorted.size()];
        long firstScanned = -1;
        for (int i = 0; i < sorted.size(); i++) {
            MemoryRegion r = sorted.get(i);
            if (i > 0 && Long.compareUnsigned(r.start(), sorted.get(i - 1).end()) < 0) {
                throw new IllegalArgumentException("regions overlap: pid=" + pid + " region=" + sorted.get(i - 1)
                        + " and region=" + r);
            }
            decisions[i] = Objects.requireNonNull(policy.decide(r), () -> "policy returned null for region=" + r);
            if (firstScanned == -1 && needsScan(decisions[i])) {
                firstScanned = r.start();
            }
        }
        PagemapScanner pagemap;
        try {
            pagemap = PagemapScanner.open(pid, VEC_CAPACITY, ENTRY_CAPACITY);
        } catch (NativeCallException e) {
            throw ProcAccess.fromNative(pid, e);
        }
        try {
            PageRangeWalker walker = walker(pid, pagemap, kind, firstScanned);
            PageScan scan = new PageScan(pid, List.copyOf(sorted), decisions, stats, pagemap, walker, count);
            stats.addPlannedPages(scan.plannedPages);
            return scan;
        } catch (NativeCallException e) {
            pagemap.close();
            throw ProcAccess.fromNative(pid, e);
        } catch (RuntimeException e) {
            pagemap.close();
            throw e;
        }
    }

    private static PageRangeWalker walker(int pid, PagemapScanner pagemap, ScannerKind kind, long probeAddress) {
        PageRangeWalker.PagemapFile file = new PageRangeWalker.PagemapFile(pagemap, address -> {
            if (ProcAccess.gone(pid)) {
                throw new ProcessGoneException(pid, String.format(
                        "/proc/%d/pagemap ended at address=0x%x: the process exited during the scan", pid, address));
            }
        });
        if (kind == ScannerKind.PAGEMAP_FILE) {
            return file;
        }
        PageRangeWalker.Ioctl ioctl = new PageRangeWalker.Ioctl(pagemap);
        // nothing to scan, nothing to probe: keep the ioctl walker, it will never be called
        if (probeAddress == -1 || ioctl.supported(probeAddress)) {
            return ioctl;
        }
        if (kind == ScannerKind.AUTO) {
            return file;
        }
        throw new PagefluxException("pid=" + pid + " the PAGEMAP_SCAN ioctl is not supported by this kernel "
                + "(needs Linux 6.7+, running " + System.getProperty("os.version")
                + "): use ScannerKind.AUTO or ScannerKind.PAGEMAP_FILE");
    }

    private static boolean needsScan(RegionDecision decision) {
        return decision.dumped() && decision.pages() != PageSelection.ALL;
    }

    /** The counting pass: the same walk as the iteration, only summed. */
    private long countPlanned() {
        long total = 0;
        for (int i = 0; i < regions.size(); i++) {
            RegionDecision d = decisions[i];
            if (!d.dumped()) {
                continue;
            }
            MemoryRegion r = regions.get(i);
            if (d.pages() == PageSelection.ALL) {
                total += r.pages();
                continue;
            }
            walker.reset(r.start(), r.end(), d.pages());
            while (walker.next()) {
                total += walker.pages();
            }
        }
        return total;
    }

    /**
     * Pages the counting pass in {@link #open} found (also added to the stats' planned pages); when the scan
     * was opened without it, the pages of the runs returned so far.
     */
    public long plannedPages() {
        return plannedPages;
    }

    /** The scanner actually used: {@link ScannerKind#PAGEMAP_SCAN} or {@link ScannerKind#PAGEMAP_FILE}. */
    public ScannerKind kind() {
        return walker.kind();
    }

    /**
     * @throws UnsupportedMappingException the iteration reached a region the policy says fails the dump
     * @throws ProcessGoneException        the process exited during the scan
     */
    @Override
    public boolean hasNext() {
        if (closed) {
            throw new IllegalStateException("page scan is closed: pid=" + pid);
        }
        if (lookahead == null) {
            try {
                lookahead = advance();
            } catch (NativeCallException e) {
                throw ProcAccess.fromNative(pid, e);
            }
        }
        return lookahead != null;
    }

    @Override
    public PlannedRun next() {
        if (!hasNext()) {
            throw new NoSuchElementException("no more runs: pid=" + pid);
        }
        PlannedRun run = lookahead;
        lookahead = null;
        return run;
    }

    private PlannedRun advance() {
        while (true) {
            if (walking) {
                if (walker.next()) {
                    return run(walker.start(), walker.end());
                }
                walking = false;
            }
            if (++index >= regions.size()) {
                index = regions.size();
                return null;
            }
            region = regions.get(index);
            decision = decisions[index];
            stats.regionSeen();
            switch (decision.action()) {
                case SKIP -> stats.regionSkipped(decision.reason());
                case FAIL -> throw new UnsupportedMappingException(pid, region, decision.reason());
                case DUMP -> {
                    stats.regionDumped();
                    if (decision.pages() == PageSelection.ALL) {
                        return run(region.start(), region.end());
                    }
                    walker.reset(region.start(), region.end(), decision.pages());
                    walking = true;
                }
            }
        }
    }

    private PlannedRun run(long start, long end) {
        boolean shmem = CriuRegionPolicies.sharedAnonymous(region);
        PagemapId target = shmem ? PagemapId.shmem(region.inode()) : PagemapId.task(pid);
        long vaddr = shmem ? region.offset() + (start - region.start()) : start;
        int flags = PageFlags.PE_PRESENT | (decision.lazy() ? PageFlags.PE_LAZY : 0);
        stats.runScanned();
        if (!counted) {
            long pages = (end - start) / PageRun.PAGE_SIZE;
            plannedPages += pages;
            stats.addPlannedPages(pages);
        }
        return new PlannedRun(new PageRun(start, (end - start) / PageRun.PAGE_SIZE, target, vaddr, flags),
                decision.via());
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            lookahead = null;
            pagemap.close();
        }
    }
}
