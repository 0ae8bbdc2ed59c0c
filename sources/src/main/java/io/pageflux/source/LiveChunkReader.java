package io.pageflux.source;

import io.pageflux.nativeio.Errno;
import io.pageflux.nativeio.NativeCallException;
import io.pageflux.nativeio.ProcMem;
import io.pageflux.nativeio.ProcessVm;
import io.pageflux.nativeio.RemoteIovecs;
import io.pageflux.source.RegionDecision.ReadVia;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Objects;

/**
 * Reads planned runs of a live process into pooled buffers, one chunk per {@link #next} call.
 *
 * <p><b>Filling a chunk.</b> Runs are taken in order until the buffer is full; a run that does not
 * fit is split at the buffer's end and continues in the next chunk. Runs read via
 * {@link ReadVia#PROCESS_VM_READV} are batched: up to {@code maxRunsPerRead} remote iovecs go to
 * ONE {@code process_vm_readv} call whose single local iovec is the free tail of the buffer.
 * {@link ReadVia#PROC_PID_MEM} runs are read with {@code pread} on {@code /proc/PID/mem}, opened
 * on first use and closed by {@link #close()}.
 *
 * <p><b>Faults</b> (criu-formats.md §4, like CRIU but without re-reading good pages one by one).
 * The kernel copies page by page and reports a short count when it meets a page it cannot read;
 * the bytes before it are good. The read is retried from the failing page: if that page alone fails
 * ({@code EFAULT}/{@code EIO}, or 0 bytes) it has <i>vanished</i> (unmapped or made unreadable since
 * the scan): it is skipped, counted with {@link DumpStats#pageVanished(long)}, its run is split
 * around it, and the read goes on with the next page into the same buffer position, so the
 * buffer stays dense and each chunk's runs describe exactly its bytes. A vanished page costs one
 * failed system call; good pages are still read in bulk. A chunk is never empty: if every page
 * of a batch vanished, the next runs are read. {@code ESRCH} (the target exited) fails with
 * {@link ProcessGoneException}; {@code EPERM}/{@code EACCES} with {@link PermissionDeniedException}
 * naming the missing capability or ptrace setting; any other errno with a {@link PagefluxException}
 * stating pid, address and errno.
 *
 * <p><b>Read threads.</b> With {@code readThreads > 1}, a {@code process_vm_readv} batch of at least
 * {@value #PARALLEL_MIN_BYTES} bytes is cut into a few pieces per thread (at page boundaries, splitting a
 * run if needed), which the calling thread and {@code readThreads - 1} helper threads claim in turn, each
 * copying its pieces into their own part of the buffer: the kernel's copy is bound to one core per call,
 * and two calls on two cores copy almost twice as fast. The helpers are dedicated threads that spin
 * briefly between batches before they park, so a batch does not pay a thread wake-up on each side (see
 * {@code PieceCopier}). When every piece arrived whole, the chunk is exactly what one call would have
 * made; when any piece came back short or failed, the whole batch is read again the one-thread way above,
 * which handles vanished pages and errors (so faults cost a second read, but only then).
 *
 * <p>Single-threaded, as {@link ChunkReader} requires ({@link #next} returns only after its helper
 * threads are done with the buffer, even when the thread is interrupted). Closing it also closes the run
 * iterator if it is {@link AutoCloseable} (a {@link PageScan}) and stops the helper threads.
 */
public final class LiveChunkReader implements ChunkReader {

    private static final int PAGE = PageRun.PAGE_SIZE;
    /** Batches smaller than this are read by one call: the hand-off would cost more than it saves. */
    static final int PARALLEL_MIN_BYTES = 1 << 20;
    /** The most read threads a reader may use. */
    public static final int MAX_READ_THREADS = 16;

    private final Iterator<PlannedRun> runs;
    private final int pid;
    private final int maxRunsPerRead;
    private final DumpStats stats;
    private final ProcessVm vm;
    private final RemoteIovecs iovecs;
    /** The runs (or run pieces) of the batch being read; slot i matches iovec i. */
    private final PageRun[] batch;
    private ProcMem mem;
    /** The next run to read, possibly the remainder of one split at the previous buffer's end. */
    private PlannedRun pending;
    private long sequence;
    private boolean closed;
    /** A failure of the run iterator met by {@link #exhausted()}, rethrown by the next read. */
    private RuntimeException scanFailure;
    private final int readThreads;
    /** Copies large batches on several threads; made on the first such batch. */
    private PieceCopier copier;
    /** Batches copied whole in parts (for tests: the parallel path was taken, not the fallback). */
    private long batchesInParts;

    /**
     * @param runs           the runs to read, in the order their bytes should appear; page aligned
     * @param pid            the target
     * @param maxRunsPerRead remote iovecs per {@code process_vm_readv} call, 1..{@value ReadOptions#MAX_IOVECS}
     * @param stats          receives {@code chunkRead} and {@code pageVanished}
     */
    public LiveChunkReader(Iterator<PlannedRun> runs, int pid, int maxRunsPerRead, DumpStats stats) {
        this(runs, pid, maxRunsPerRead, stats, 1);
    }

    /**
     * A reader of {@code runs} as {@code options} ask: runs per call, stats and read threads. The one place
     * live sources build their reader, so that no option is dropped on one path.
     */
    public static LiveChunkReader of(Iterator<PlannedRun> runs, int pid, ReadOptions options) {
        return new LiveChunkReader(runs, pid, options.maxRunsPerRead(), options.stats(), options.readThreads());
    }

    /**
     * @param readThreads threads copying each large batch, 1..{@value #MAX_READ_THREADS} (see the class
     *                    description); 1 reads on the calling thread only
     */
    public LiveChunkReader(Iterator<PlannedRun> runs, int pid, int maxRunsPerRead, DumpStats stats, int readThreads) {
        if (readThreads < 1 || readThreads > MAX_READ_THREADS) {
            throw new IllegalArgumentException("readThreads must be 1.." + MAX_READ_THREADS + ": " + readThreads);
        }
        this.readThreads = readThreads;
        this.runs = Objects.requireNonNull(runs, "runs");
        this.stats = Objects.requireNonNull(stats, "stats");
        if (maxRunsPerRead < 1 || maxRunsPerRead > ReadOptions.MAX_IOVECS) {
            throw new IllegalArgumentException("maxRunsPerRead must be 1.." + ReadOptions.MAX_IOVECS + ": "
                    + maxRunsPerRead);
        }
        this.pid = pid;
        this.maxRunsPerRead = maxRunsPerRead;
        this.vm = ProcessVm.forPid(pid);
        this.iovecs = new RemoteIovecs(maxRunsPerRead);
        this.batch = new PageRun[maxRunsPerRead];
    }

    public int pid() {
        return pid;
    }

    /** How many batches were copied whole by several threads (the rest by one thread). */
    long batchesInParts() {
        return batchesInParts;
    }

    @Override
    public PageChunk next(PooledBuffer buffer) {
        if (closed) {
            throw new IllegalStateException("reader closed: pid=" + pid);
        }
        // computed once per chunk, not per call: the pool hands out the same few buffers
        long base = buffer.address();
        int capacityPages = buffer.capacity() / PAGE;
        List<PageRun> out = new ArrayList<>();
        int filled = 0;
        while (filled < capacityPages) {
            PlannedRun head = peek();
            if (head == null) {
                break;
            }
            ReadVia via = head.via();
            int count = planBatch(via, capacityPages - filled);
            long local = base + (long) filled * PAGE;
            filled += via == ReadVia.PROC_PID_MEM ? readViaMem(count, local, out) : readViaVm(count, local, out);
        }
        if (filled == 0) {
            return null;
        }
        stats.chunkRead(filled);
        return PageChunk.of(buffer, filled * PAGE, out, sequence++);
    }

    /**
     * Whether every planned run has been read, so {@link #next} would return {@code null}. May
     * pull the next run from the scan; never throws: a scan failure is kept and thrown by the
     * next {@link #next} call, where the stream can report it.
     */
    @Override
    public boolean exhausted() {
        if (closed) {
            return true;
        }
        if (pending != null || scanFailure != null) {
            return false;
        }
        try {
            return peek() == null;
        } catch (RuntimeException e) {
            scanFailure = e;
            return false;
        }
    }

    private PlannedRun peek() {
        if (scanFailure != null) {
            RuntimeException failure = scanFailure;
            scanFailure = null;
            throw failure;
        }
        if (pending == null && runs.hasNext()) {
            PlannedRun next = Objects.requireNonNull(runs.next(), "run iterator returned null");
            PageRun run = next.run();
            if (run.address() % PAGE != 0) {
                throw new IllegalArgumentException(String.format("run is not page aligned: pid=%d address=0x%x",
                        pid, run.address()));
            }
            pending = next.via() == null ? new PlannedRun(run, ReadVia.PROCESS_VM_READV) : next;
        }
        return pending;
    }

    /**
     * Moves up to {@code maxRunsPerRead} runs read via {@code via} into {@link #batch}, at most
     * {@code roomPages} pages in all, splitting the last one if it does not fit.
     */
    private int planBatch(ReadVia via, long roomPages) {
        int count = 0;
        long room = roomPages;
        while (count < maxRunsPerRead && room > 0) {
            PlannedRun next = peek();
            if (next == null || next.via() != via) {
                break;
            }
            PageRun run = next.run();
            if (run.pages() <= room) {
                batch[count++] = run;
                room -= run.pages();
                pending = null;
            } else {
                batch[count++] = run.slice(0, room);
                pending = new PlannedRun(run.slice(room, run.pages() - room), via);
                room = 0;
            }
        }
        return count;
    }

    /** Reads {@code batch[0..count)} with process_vm_readv; returns the pages placed at {@code local}. */
    private int readViaVm(int count, long local, List<PageRun> out) {
        long remaining = 0;
        for (int i = 0; i < count; i++) {
            remaining += batch[i].bytes();
        }
        if (readThreads > 1 && remaining >= PARALLEL_MIN_BYTES && readInParts(count, local, remaining)) {
            // every part arrived whole: the same chunk one complete call would have made
            batchesInParts++;
            Progress p = new Progress(out);
            p.advance(batch, remaining / PAGE);
            return p.placed;
        }
        for (int i = 0; i < count; i++) {
            iovecs.set(i, batch[i].address(), batch[i].bytes());
        }
        Progress p = new Progress(out);
        while (p.index < count) {
            PageRun run = batch[p.index];
            long address = run.address() + p.done * PAGE;
            // entry p.index may start mid-run after a short read or a vanished page: rewrite it
            iovecs.set(p.index, address, (run.pages() - p.done) * PAGE);
            long n;
            try {
                n = vm.read(local + (long) p.placed * PAGE, remaining, iovecs, p.index, count - p.index);
            } catch (NativeCallException e) {
                if (e.errno() != Errno.EFAULT) {
                    throw LiveErrors.translate(pid, "while reading", address, e);
                }
                n = 0;
            }
            // a copy that ended inside a page leaves that page to the retry
            long pages = n / PAGE;
            if (pages == 0) {
                p.vanish(batch);
                remaining -= PAGE;
            } else {
                p.advance(batch, pages);
                remaining -= pages * PAGE;
            }
        }
        return p.placed;
    }

    /**
     * Copies {@code batch[0..count)} ({@code total} bytes) on {@link #readThreads} threads at once. True when
     * every piece was copied whole; false when any came back short or failed (the caller then reads the batch
     * again, one call at a time, which sorts out vanished pages and errors). Returns only when every helper
     * is done with the buffer.
     */
    private boolean readInParts(int count, long local, long total) {
        if (copier == null) {
            copier = new PieceCopier(pid, readThreads, maxRunsPerRead);
        }
        return copier.copy(batch, count, local, total);
    }

    /** Reads {@code batch[0..count)} with pread on /proc/PID/mem; returns the pages placed at {@code local}. */
    private int readViaMem(int count, long local, List<PageRun> out) {
        if (mem == null) {
            try {
                mem = ProcMem.open(pid);
            } catch (NativeCallException e) {
                throw LiveErrors.translate(pid, "while opening /proc/" + pid + "/mem", batch[0].address(), e);
            }
        }
        Progress p = new Progress(out);
        while (p.index < count) {
            PageRun run = batch[p.index];
            long address = run.address() + p.done * PAGE;
            long n;
            try {
                n = mem.read(local + (long) p.placed * PAGE, (run.pages() - p.done) * PAGE, address);
            } catch (NativeCallException e) {
                // EIO: the first page is not mapped (any more); EFAULT: not accessible
                if (e.errno() != Errno.EIO && e.errno() != Errno.EFAULT) {
                    throw LiveErrors.translate(pid, "while reading", address, e);
                }
                // the kernel held the target's address space for this call, so the page itself is gone
                n = -1;
            }
            long pages = Math.max(n, 0) / PAGE;
            if (pages == 0) {
                // 0 bytes is also what an exited target's /proc/PID/mem returns: tell the two apart
                if (n == 0 && !ProcStat.alive(pid)) {
                    throw new ProcessGoneException(pid, String.format("while reading address=0x%x via=%s: "
                            + "the target exited; nothing more can be read", address, ReadVia.PROC_PID_MEM));
                }
                p.vanish(batch);
            } else {
                p.advance(batch, pages);
            }
        }
        return p.placed;
    }

    /**
     * Where a batch read stands: run {@code index}, {@code done} pages into it, {@code placed}
     * pages written to the buffer, and the good stretch of the current run not yet emitted.
     */
    private final class Progress {
        final List<PageRun> out;
        int index;
        long done;
        long goodFrom;
        int placed;

        Progress(List<PageRun> out) {
            this.out = out;
        }

        /** {@code pages} pages were copied, starting at the current position. */
        void advance(PageRun[] batch, long pages) {
            long left = pages;
            while (left > 0) {
                long take = Math.min(left, batch[index].pages() - done);
                done += take;
                placed += (int) take;
                left -= take;
                if (done == batch[index].pages()) {
                    nextRun(batch);
                }
            }
        }

        /** The page at the current position cannot be read: skip it and split its run around it. */
        void vanish(PageRun[] batch) {
            PageRun run = batch[index];
            stats.pageVanished(run.address() + done * PAGE);
            emit(run, goodFrom, done);
            done++;
            goodFrom = done;
            if (done == run.pages()) {
                nextRun(batch);
            }
        }

        private void nextRun(PageRun[] batch) {
            emit(batch[index], goodFrom, done);
            batch[index] = null;
            index++;
            done = 0;
            goodFrom = 0;
        }

        private void emit(PageRun run, long from, long to) {
            if (to > from) {
                out.add(from == 0 && to == run.pages() ? run : run.slice(from, to - from));
            }
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (copier != null) {
            copier.close(); // its helpers are idle: next() waited for them
        }
        try {
            if (mem != null) {
                mem.close();
                mem = null;
            }
        } finally {
            if (runs instanceof AutoCloseable closeable) {
                try {
                    closeable.close();
                } catch (Exception e) {
                    throw new PagefluxException("cannot close the page scan of pid=" + pid + ": " + e.getMessage(), e);
                }
            }
        }
    }
}
