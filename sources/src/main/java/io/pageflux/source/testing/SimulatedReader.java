package io.pageflux.source.testing;

import io.pageflux.source.ChunkReader;
import io.pageflux.source.DumpStats;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.PooledBuffer;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.RegionDecision;
import io.pageflux.source.UnsupportedMappingException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.NavigableMap;
import java.util.concurrent.TimeUnit;
import reactor.core.scheduler.Scheduler;

/**
 * Reads a {@link SimulatedProcess} the way the live reader reads a real one: runs in address
 * order, split at the buffer's end, vanished pages skipped so each chunk stays dense, at most
 * {@code maxRunsPerRead} runs per chunk. Regions are decided up front (a {@code FAIL} fails
 * before anything is read); their runs are computed lazily, one region at a time.
 * Single-threaded, as {@link ChunkReader} requires.
 */
final class SimulatedReader implements ChunkReader {

    private static final int PAGE = PageRun.PAGE_SIZE;

    private final SimulatedProcess process;
    private final DumpStats stats;
    private final int maxRuns;
    private final Scheduler clock;
    private final long startNanos;
    private final List<Planned> plan = new ArrayList<>();
    private final NavigableMap<Long, Long> vanished;
    private int regionIndex = -1;
    private Planned current;
    private PagePresence.Runs currentRuns;
    private boolean allPagesEmitted;
    /** The next run to read, possibly the remainder of one split at the previous buffer's end. */
    private PageRun pending;
    private long sequence;
    private long bytesRead;

    /** A region the policy dumps, with how its runs are labelled. */
    private record Planned(SimulatedRegion region, RegionDecision decision, PagemapId pagemap, long pagemapBase,
                           int flags) {
    }

    SimulatedReader(SimulatedProcess process, ReadOptions options) {
        this.process = process;
        this.stats = options.stats();
        this.maxRuns = options.maxRunsPerRead();
        this.clock = options.scheduler();
        this.startNanos = clock.now(TimeUnit.NANOSECONDS);
        this.vanished = process.vanishedRanges();
        List<SimulatedRegion> regions = process.simulatedRegions();
        for (SimulatedRegion region : regions) {
            // Rss is not needed to decide; computing it would walk every block of every region now
            MemoryRegion view = region.toMemoryRegion(0);
            RegionDecision decision = options.policy().decide(view);
            stats.regionSeen();
            switch (decision.action()) {
                case SKIP -> stats.regionSkipped(decision.reason());
                case FAIL -> throw new UnsupportedMappingException(process.pid(), view, decision.reason());
                case DUMP -> {
                    stats.regionDumped();
                    int flags = PageFlags.PE_PRESENT | (decision.lazy() ? PageFlags.PE_LAZY : 0);
                    if (view.sharedAnonymous()) {
                        // shared anonymous pages are recorded by their offset inside the shmem object
                        plan.add(new Planned(region, decision, PagemapId.shmem(view.inode()), view.offset(), flags));
                    } else {
                        plan.add(new Planned(region, decision, PagemapId.task(process.pid()), region.start(), flags));
                    }
                }
            }
        }
    }

    @Override
    public PageChunk next(PooledBuffer buffer) {
        checkAlive();
        int capacityPages = buffer.capacity() / PAGE;
        List<PageRun> out = new ArrayList<>();
        int filled = 0;
        while (filled < capacityPages && out.size() < maxRuns) {
            PageRun run = peek();
            if (run == null) {
                break;
            }
            Map.Entry<Long, Long> gone = vanished.floorEntry(run.address());
            if (gone != null && gone.getValue() > run.address()) {
                // planned, but unmapped since the scan: skip it, as a live read skips an EFAULT page
                long skip = Math.min(run.pages(), (gone.getValue() - run.address()) / PAGE);
                for (long p = 0; p < skip; p++) {
                    stats.pageVanished(run.address() + p * PAGE);
                }
                consume(run, skip);
                continue;
            }
            Long nextGone = vanished.ceilingKey(run.address());
            long readable = nextGone == null ? run.pages() : Math.min(run.pages(), (nextGone - run.address()) / PAGE);
            long take = Math.min(readable, capacityPages - filled);
            PageRun piece = run.slice(0, take);
            if (process.readErrorAt().isPresent()) {
                long bad = process.readErrorAt().getAsLong();
                if (bad >= piece.address() && bad < piece.end()) {
                    throw new InjectedFaultException(String.format("read failed: pid=%d address=0x%x errno=EIO "
                            + "(injected fault: SimulatedProcess.Builder.readErrorAt); the dump stops, nothing "
                            + "after this chunk is read", process.pid(), bad));
                }
            }
            out.add(piece);
            filled += (int) take;
            consume(run, take);
        }
        if (filled == 0) {
            return null;
        }
        if (process.fillPagesEnabled()) {
            fill(buffer, out);
        }
        stats.chunkRead(filled);
        bytesRead += (long) filled * PAGE;
        return PageChunk.of(buffer, filled * PAGE, out, sequence++);
    }

    @Override
    public boolean exhausted() {
        return peek() == null;
    }

    @Override
    public Duration cost(PageChunk chunk) {
        return Duration.ofNanos(process.costNanos(chunk.bytes()));
    }

    private void checkAlive() {
        long limit = process.exitAfterBytes();
        if (limit >= 0 && bytesRead >= limit) {
            throw new ProcessGoneException(process.pid(), String.format("exited after bytes=%d at chunk=%d "
                    + "(injected fault: SimulatedProcess.Builder.exitAfter); nothing more can be read", bytesRead,
                    sequence));
        }
        Duration exitAt = process.exitAt();
        if (exitAt != null) {
            long elapsed = clock.now(TimeUnit.NANOSECONDS) - startNanos;
            if (elapsed >= exitAt.toNanos()) {
                throw new ProcessGoneException(process.pid(), String.format("exited at=%s (read began %s ago) after "
                        + "bytes=%d (injected fault: SimulatedProcess.Builder.exitAt); nothing more can be read",
                        exitAt, Duration.ofNanos(elapsed), bytesRead));
            }
        }
    }

    private void consume(PageRun run, long pages) {
        pending = pages == run.pages() ? null : run.slice(pages, run.pages() - pages);
    }

    /** The run to read next, computing the next region's runs when one ends. */
    private PageRun peek() {
        while (pending == null && !allPagesEmitted) {
            long[] next = currentRuns == null ? null : currentRuns.next();
            if (next == null) {
                if (++regionIndex >= plan.size()) {
                    allPagesEmitted = true;
                    break;
                }
                startRegion(plan.get(regionIndex));
                continue;
            }
            stats.runScanned();
            long address = current.region().start() + next[0] * PAGE;
            long pagemapVaddr = current.pagemapBase() + next[0] * PAGE;
            pending = new PageRun(address, next[1], current.pagemap(), pagemapVaddr, current.flags());
        }
        return pending;
    }

    private void startRegion(Planned planned) {
        current = planned;
        SimulatedRegion region = planned.region();
        // every page for ALL ([vdso]-like selection), else the present ones
        double density = planned.decision().pages() == RegionDecision.PageSelection.ALL ? 1.0 : region.density();
        PagePresence presence = new PagePresence(process.seed(), region.start(), region.pages(),
                region.blockPages(), density);
        stats.addPlannedPages(presence.presentPages());
        currentRuns = presence.new Runs();
    }

    private void fill(PooledBuffer buffer, List<PageRun> runs) {
        ByteBuffer target = buffer.buffer().duplicate().order(ByteOrder.LITTLE_ENDIAN);
        int pos = 0;
        for (PageRun run : runs) {
            for (long a = run.address(), end = run.end(); a < end; a += Long.BYTES, pos += Long.BYTES) {
                target.putLong(pos, process.expectedWord(a));
            }
        }
    }
}
