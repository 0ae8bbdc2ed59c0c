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
import java.util.HashMap;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;

/**
 * {@value #METHOD}: changed pages found with the kernel's soft-dirty bits ({@link SoftDirty}). While the
 * target is frozen, right after the scan ({@link FreezingSource.FrozenScanStep}):
 * <ol>
 *   <li>read the pagemap entries of every planned page; a page whose bit 55 is clear and that the parent
 *       has ({@code previous} holds its digest) becomes part of a PE_PARENT run — a hole that is <b>not
 *       read</b>; a soft-dirty page, or a clean page new to the chain, keeps its flags and is read;</li>
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
        return source.withFrozenScanStep(this::afterScan).withReaderDecorator(this::wrap);
    }

    /** The frozen step: split the runs by their soft-dirty bits, then clear the bits. */
    RunList afterScan(RunList scanned) {
        long t0 = System.nanoTime();
        RunList out;
        try (SoftDirty.Entries pagemap = kernel.open(pid)) {
            out = split(scanned, pagemap::read, previous, true);
        }
        long t1 = System.nanoTime();
        lookupNanos.addAndGet(t1 - t0);
        kernel.clear(pid);
        clearNanos.addAndGet(System.nanoTime() - t1);
        cleared = true;
        return out;
    }

    /** Reads pagemap entries, as {@link SoftDirty.Entries#read}. */
    @FunctionalInterface
    private interface EntryReader {
        void read(long address, long[] into, int count);
    }

    private RunList split(RunList scanned, EntryReader entriesOf, PageDigests parentDigests, boolean count) {
        RunList out = new RunList();
        Map<PagemapId, PageDigests.Cursor> parent = new HashMap<>();
        long[] entries = new long[1024];
        for (PlannedRun planned : scanned) {
            PageRun run = planned.run();
            if (run.pagemap().kind() != PagemapId.Kind.TASK) {
                // shared memory: a clean bit says only that this process's mapping was not written through;
                // another process sharing the object (a forked worker, a write(2) into a memfd) may have
                // changed the page, so it is read and sent whole
                out.add(planned);
                continue;
            }
            int pages = Math.toIntExact(run.pages());
            if (entries.length < pages) {
                entries = new long[pages];
            }
            entriesOf.read(run.address(), entries, pages);
            PageDigests.Cursor cursor = parent.computeIfAbsent(run.pagemap(), parentDigests::cursor);
            int at = 0;
            for (PageRun piece : SoftDirty.split(run, entries, cursor::find)) {
                out.add(new PlannedRun(piece, planned.via()));
                if (count && !PageFlags.has(piece.flags(), PageFlags.PE_PARENT)) {
                    long bits = 0;
                    for (int i = at; i < at + piece.pages(); i++) {
                        bits += (entries[i] & SoftDirty.PM_SOFT_DIRTY) != 0 ? 1 : 0;
                    }
                    dirty.addAndGet(bits);
                    newToChain.addAndGet(piece.pages() - bits);
                }
                at += (int) piece.pages();
            }
        }
        return out;
    }

    /** Pages of the synthetic run {@link #warmUp} splits. */
    private static final int WARM_UP_PAGES = 1 << 16;
    private static final int WARM_UP_ROUNDS = 5;

    /**
     * Runs the frozen step's code on synthetic bits before the freeze, so that the JIT has compiled it and the
     * native calls are bound: the first, cold run over 512 MiB costs the frozen target hundreds of milliseconds,
     * a warm one about 2 ms. Costs some CPU while the target runs; nothing of the target is changed.
     */
    void warmUp() {
        long base = 1L << 40;
        PagemapId id = PagemapId.task(pid);
        PageDigests.Builder fake = PageDigests.builder();
        long[] bits = new long[WARM_UP_PAGES];
        for (int i = 0; i < WARM_UP_PAGES; i++) {
            // a digest for 7 pages of 8, a dirty bit on every 3rd: every branch of the loops
            if (i % 8 != 7) {
                fake.add(id, base + (long) i * PAGE, i);
            }
            bits[i] = i % 3 == 0 ? SoftDirty.PM_SOFT_DIRTY : 0;
        }
        PageDigests parentDigests = fake.build(0, 0);
        RunList runs = new RunList();
        runs.add(new PlannedRun(new PageRun(base, WARM_UP_PAGES, id, base, PageFlags.PE_PRESENT),
                io.pageflux.source.RegionDecision.ReadVia.PROCESS_VM_READV));
        // the target's own pagemap is read too (a range it does not map: cheap, and no bit is cleared), so that
        // the first real read in the freeze does not pay for binding and compiling the native calls
        try (SoftDirty.Entries pagemap = kernel.open(pid)) {
            for (int round = 0; round < WARM_UP_ROUNDS; round++) {
                split(runs, (address, into, n) -> {
                    pagemap.read(address, into, n);
                    System.arraycopy(bits, (int) ((address - base) / PAGE), into, 0, n);
                }, parentDigests, false);
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
