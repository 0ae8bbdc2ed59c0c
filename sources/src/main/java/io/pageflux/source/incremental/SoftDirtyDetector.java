package io.pageflux.source.incremental;

import io.pageflux.source.ChunkReader;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.PlannedRun;
import io.pageflux.source.freeze.FreezingSource;
import io.pageflux.source.freeze.RunList;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;

/**
 * {@value #METHOD}: changed pages found with the kernel's soft-dirty bits ({@link SoftDirty}). While the
 * target is frozen, right after the scan ({@link FreezingSource.FrozenScanStep}):
 * <ol>
 *   <li>read the soft-dirty ranges of every planned run ({@code PAGEMAP_SCAN}); a page outside them that the
 *       parent has ({@code previous} holds its digest) becomes part of a PE_PARENT run — a hole that is <b>not
 *       read</b>; a soft-dirty page, or a clean page new to the chain, keeps its flags and is read. Both sides are
 *       range lists merged in one walk ({@link SoftDirty#split(PageRun, PageRanges, PageRanges)}), so the frozen
 *       work follows the number of ranges, not of pages;</li>
 *   <li>clear the bits ({@code clear_refs 4}) so that the next iteration sees the writes made after this
 *       scan. Clearing after the scan, before the thaw, loses no write.</li>
 * </ol>
 * Only correct if the parent's dump cleared the bits while its target was frozen
 * ({@link PageDigests#softDirtyCleared()}) and nothing cleared them since: the caller checks the first
 * ({@link ChangeDetection}).
 *
 * <p>The digests of the next iteration stay complete: pages read are hashed (on the read worker, not frozen),
 * holes keep the parent's digest (the page is unchanged). So a digest iteration may follow a soft-dirty one.
 */
public final class SoftDirtyDetector implements PageChangeDetector {

    /** The method's name in reports. */
    public static final String METHOD = "soft-dirty";

    private static final int PAGE = PageRun.PAGE_SIZE;

    private final PageDigests previous;
    private final int pid;
    private final SoftDirty.Kernel kernel;
    private final PageDigests.Builder next = PageDigests.builder();
    private final Map<PagemapId, PageDigests.Cursor> readCursors = new HashMap<>();
    private final AtomicLong dirty = new AtomicLong();
    private final AtomicLong newToChain = new AtomicLong();
    private final AtomicLong changed = new AtomicLong();
    private final AtomicLong unchanged = new AtomicLong();
    private final AtomicLong hashNanos = new AtomicLong();
    private final AtomicLong lookupNanos = new AtomicLong();
    private final AtomicLong clearNanos = new AtomicLong();
    private volatile boolean cleared;
    /** See {@link #rangeBufferBytes()}; written by the frozen step only. */
    private long rangeBytes;

    /**
     * @param previous the parent's digests (which pages the chain has); {@link PageDigests#empty()}: no hole
     * @param pid      the target
     * @param kernel   soft-dirty bits and clearing ({@link SoftDirty#kernel()})
     */
    public SoftDirtyDetector(PageDigests previous, int pid, SoftDirty.Kernel kernel) {
        this.previous = Objects.requireNonNull(previous, "previous");
        this.pid = pid;
        this.kernel = Objects.requireNonNull(kernel, "kernel");
    }

    @Override
    public String method() {
        return METHOD;
    }

    @Override
    public FreezingSource configure(FreezingSource source) {
        warmUp();
        kernel.prepareClear(pid); // the ledger's record: a file write, not while the target is stopped
        return source.withFrozenScanStep(this::afterScan).withReaderDecorator(this::wrap);
    }

    /** The frozen step: split the runs by their soft-dirty bits, then clear the bits. */
    RunList afterScan(RunList scanned) {
        long t0 = System.nanoTime();
        RunList out;
        try (SoftDirty.Entries pagemap = kernel.open(pid)) {
            out = split(scanned, pagemap, previous);
        }
        long t1 = System.nanoTime();
        lookupNanos.addAndGet(t1 - t0);
        kernel.clear(pid);
        clearNanos.addAndGet(System.nanoTime() - t1);
        cleared = true;
        return out;
    }

    /**
     * Splits every task run into pages to read and PE_PARENT holes, from the run's dirty ranges and the
     * parent's runs of pages (two range lists, merged): nothing here is per page, so a 64 GiB mapping with a few
     * dirty ranges costs a few steps while the target is frozen.
     */
    private RunList split(RunList scanned, SoftDirty.Entries pagemap, PageDigests parentDigests) {
        RunList out = new RunList();
        PageRanges dirtyRanges = new PageRanges(SoftDirty.RANGES_PER_SCAN);
        PageRanges parentRanges = new PageRanges(64);
        for (PlannedRun planned : scanned) {
            PageRun run = planned.run();
            if (run.pagemap().kind() != PagemapId.Kind.TASK) {
                // shared memory: a clean bit says only that this process's mapping was not written through;
                // another process sharing the object (a forked worker, a write(2) into a memfd) may have
                // changed the page, so it is read and sent whole
                out.add(planned);
                continue;
            }
            dirtyRanges.clear();
            pagemap.readDirty(run.address(), run.end(), dirtyRanges);
            parentRanges.clear();
            parentDigests.runsIn(run.pagemap(), run.pagemapVaddr(), run.pagemapVaddr() + run.bytes(), parentRanges);
            long shift = run.pagemapVaddr() - run.address();
            long holes = SoftDirty.split(run, dirtyRanges, parentRanges, (address, pages, hole) -> out.add(address,
                    pages, run.pagemap(), address + shift, hole ? PageFlags.PE_PARENT : run.flags(), planned.via()));
            // every dirty page is read; the other pages read are clean ones the parent lacks
            long bits = dirtyRanges.pagesWithin(run.address(), run.end());
            dirty.addAndGet(bits);
            newToChain.addAndGet(run.pages() - holes - bits);
            rangeBytes = Math.max(rangeBytes, dirtyRanges.memoryBytes() + parentRanges.memoryBytes());
        }
        return out;
    }

    /** The most the range lists of the frozen step took, in bytes (for tests: no per-page structure). */
    long rangeBufferBytes() {
        return rangeBytes;
    }

    /** {@link #warmUp} splits this many synthetic runs, of 64 pages but every 16th of 4096 (over 512 ranges). */
    private static final int WARM_UP_RUNS = 256;
    private static final int WARM_UP_ROUNDS = 5;

    /**
     * Runs the frozen step's code on synthetic ranges before the freeze, so that the JIT has compiled it and the
     * native calls are bound: in a fresh JVM the first, interpreted run would cost the frozen target several
     * milliseconds. Every branch must be taken here, as one first taken in the freeze makes the JIT drop its code
     * (back to the interpreter, mid-freeze): many runs, short and long, dirty ranges that touch and that fill
     * more than the initial arrays, parent runs with gaps, the counters. Costs a few milliseconds of CPU while
     * the target runs; nothing of the target is changed.
     */
    void warmUp() {
        long base = 1L << 40;
        PagemapId id = PagemapId.task(pid);
        PageDigests.Builder fake = PageDigests.builder();
        List<long[]> dirtyPages = new ArrayList<>();
        RunList runs = new RunList();
        long start = base;
        for (int r = 0; r < WARM_UP_RUNS; r++) {
            int pages = r % 16 == 15 ? 4096 : 64;
            runs.add(start, pages, id, start, PageFlags.PE_PRESENT,
                    io.pageflux.source.RegionDecision.ReadVia.PROCESS_VM_READV);
            for (int i = 0; i < pages; i++) {
                long page = start + (long) i * PAGE;
                // a digest for 7 pages of 8; 2 dirty pages of 5, added one by one (so they merge)
                if (i % 8 != 7) {
                    fake.add(id, page, i);
                }
                if (i % 5 < 2) {
                    dirtyPages.add(new long[] {page, page + PAGE});
                }
            }
            start += (pages + 1L) * PAGE;
        }
        PageRanges bits = new PageRanges();
        dirtyPages.forEach(p -> bits.add(p[0], p[1]));
        PageDigests parentDigests = fake.build(0, 0);
        // each round splits the runs twice: with the synthetic bits, and with the target's own pagemap (a range it
        // does not map: cheap, and no bit is cleared) — so that the native calls are bound, and the JIT, having
        // seen both kinds of Entries, keeps its compiled code when the real one comes in the freeze. A scratch
        // detector keeps this one's counters clean.
        SoftDirtyDetector scratch = new SoftDirtyDetector(parentDigests, pid, kernel);
        try (SoftDirty.Entries pagemap = kernel.open(pid)) {
            SoftDirty.Entries synthetic = new SoftDirty.Entries() {
                @Override
                public void read(long address, long[] into, int n) {
                    throw new UnsupportedOperationException("warm-up reads ranges only");
                }

                @Override
                public void readDirty(long from, long to, PageRanges into) {
                    into.addAll(bits, from, to);
                }

                @Override
                public void close() {
                }
            };
            boolean realPagemap = true;
            for (int round = 0; round < WARM_UP_ROUNDS; round++) {
                scratch.split(runs, synthetic, parentDigests);
                if (realPagemap) {
                    try {
                        scratch.split(runs, pagemap, parentDigests);
                    } catch (RuntimeException e) {
                        // 1 TiB is beyond a small user address space (e.g. 39-bit): the warm-up is an
                        // optimisation, the dump must not fail for it
                        realPagemap = false;
                    }
                }
            }
        }
    }

    /** Records the digests of every page that passes: hashed if read, the parent's if a hole. */
    ChunkReader wrap(ChunkReader reader) {
        return ChunkReader.mapping(reader, (chunk, buffer) -> {
            record(chunk);
            return chunk;
        });
    }

    private void record(PageChunk chunk) {
        long t0 = System.nanoTime();
        ByteBuffer data = chunk.data().order(ByteOrder.LITTLE_ENDIAN);
        int offset = 0;
        for (PageRun run : chunk.runs()) {
            boolean hole = PageFlags.has(run.flags(), PageFlags.PE_PARENT);
            PageDigests.Cursor cursor = hole ? readCursors.computeIfAbsent(run.pagemap(), previous::cursor) : null;
            for (long p = 0; p < run.pages(); p++) {
                long vaddr = run.pagemapVaddr() + p * PAGE;
                if (hole) {
                    if (!cursor.find(vaddr)) {
                        throw new IllegalStateException(String.format("hole without a parent digest: pid=%d "
                                + "pagemap=%s vaddr=0x%x", pid, run.pagemap(), vaddr));
                    }
                    next.add(run.pagemap(), vaddr, cursor.digest());
                } else {
                    next.add(run.pagemap(), vaddr, XxHash64.hash(data, offset + (int) (p * PAGE), PAGE, 0));
                }
            }
            (hole ? unchanged : changed).addAndGet(run.pages());
            offset += (int) run.bytes();
        }
        hashNanos.addAndGet(System.nanoTime() - t0);
    }

    @Override
    public long changedPages() {
        return changed.get();
    }

    @Override
    public long unchangedPages() {
        return unchanged.get();
    }

    @Override
    public long pagesNotRead() {
        return unchanged.get();
    }

    /** Planned pages whose soft-dirty bit was set (read). */
    public long dirtyPages() {
        return dirty.get();
    }

    /** Planned pages whose bit was clear but that the parent does not have (read all the same). */
    public long cleanButNewPages() {
        return newToChain.get();
    }

    @Override
    public Duration hashTime() {
        return Duration.ofNanos(hashNanos.get());
    }

    /** Time reading the soft-dirty bits, frozen. */
    public Duration lookupTime() {
        return Duration.ofNanos(lookupNanos.get());
    }

    /** Time clearing them, frozen. */
    public Duration clearTime() {
        return Duration.ofNanos(clearNanos.get());
    }

    @Override
    public Duration frozenTime() {
        return Duration.ofNanos(lookupNanos.get() + clearNanos.get());
    }

    @Override
    public boolean clearedSoftDirty() {
        return cleared;
    }

    @Override
    public PageDigests digests(int pid, long dumpUptimeMicros) {
        return next.build(pid, dumpUptimeMicros).withSoftDirtyCleared(cleared);
    }
}
