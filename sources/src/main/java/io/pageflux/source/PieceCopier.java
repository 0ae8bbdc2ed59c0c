package io.pageflux.source;

import io.pageflux.nativeio.NativeCallException;
import io.pageflux.nativeio.ProcessVm;
import io.pageflux.nativeio.RemoteIovecs;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * Copies one {@code process_vm_readv} batch on the calling thread and {@code threads - 1} helper threads
 * at once: the batch is cut into <i>pieces</i> (a few per thread, at page boundaries) that the threads
 * claim in turn (see {@link #layout} for the order), each copying its pieces into their own part of the buffer.
 *
 * <p>Why pieces and not one half per thread: a helper that starts late (woken from a park, or its core
 * busy with the JIT or the sink) then simply copies fewer pieces, and the caller never waits longer than
 * one piece for it. Why dedicated threads that spin: on a VM a park/unpark round trip costs tens of
 * microseconds each way, next to ~300 µs for copying half of a 4 MiB chunk. A helper spins
 * ({@link Thread#onSpinWait}) for {@link #HELPER_SPIN_NANOS} after each batch before it parks, which covers
 * the caller's work between two batches (handing the chunk downstream, taking the next buffer); the caller
 * spins up to {@link #CALLER_SPIN_NANOS} for the last pieces a helper is still copying before it parks.
 * The old executor hand-off (a {@code Future} per batch) cost ~9 futex calls per batch and left both
 * threads ~20% idle.
 *
 * <p>{@link #copy} returns only when every claimed piece is done: no helper writes into the buffer after it,
 * so the caller may hand the buffer on or back. A helper that wakes after the batch ended finds no piece
 * left to claim (claims carry the batch's generation). Single caller thread, like {@link ChunkReader}.
 */
final class PieceCopier implements AutoCloseable {

    /** How long a helper spins for the next batch before it parks. */
    static final long HELPER_SPIN_NANOS = 100_000;
    /** How long the caller spins for the helpers' last pieces before it parks. */
    static final long CALLER_SPIN_NANOS = 200_000;
    /** Pieces per thread and batch: enough for a late helper to join, few enough to keep calls large. */
    static final int PIECES_PER_THREAD = 4;
    /** Pieces are not made smaller than this (a call of 256 KiB still copies at full speed). */
    static final long MIN_PIECE_BYTES = 256 << 10;
    private static final int PAGE = PageRun.PAGE_SIZE;
    private static final long GENERATION_MASK = 0xFFFF_FFFFL;
    private static final AtomicInteger IDS = new AtomicInteger();

    private final int pid;
    private final int threads;
    private final int maxRunsPerPiece;
    /** One per thread (the local iovec is not thread-safe); [0] is the caller's. */
    private final ProcessVm[] vms;
    /** Piece i's remote iovecs, local address, bytes and iovec count; written by the caller before publishing. */
    private final RemoteIovecs[] pieceIovecs;
    private final long[] pieceLocal;
    private final long[] pieceLength;
    private final int[] pieceRuns;
    /**
     * Pieces of the current batch, and the order they are claimed in; written before {@link #state} publishes
     * the batch, and not rewritten before every piece was claimed and copied.
     */
    private int pieces;
    private final int[] claimOrder;
    /** (generation &lt;&lt; 32) | next unclaimed piece: a claim is a CAS, so it cannot leak into a later batch. */
    private final AtomicLong state = new AtomicLong();
    private final AtomicInteger completed = new AtomicInteger();
    private volatile boolean pieceShort;
    /** The caller while it is parked waiting for the last pieces. */
    private volatile Thread waiter;
    private volatile boolean closed;
    private long generation;
    private Helper[] helpers;
    /** Runs on a helper before each piece it copies; tests use it to make a helper slow. Null otherwise. */
    volatile Runnable beforeHelperPiece;
    /** Pieces copied by helpers (for tests and diagnostics). */
    private final AtomicLong piecesByHelpers = new AtomicLong();

    PieceCopier(int pid, int threads, int maxRunsPerPiece) {
        if (threads < 2) {
            throw new IllegalArgumentException("a piece copier needs at least 2 threads: threads=" + threads);
        }
        this.pid = pid;
        this.threads = threads;
        this.maxRunsPerPiece = maxRunsPerPiece;
        int maxPieces = threads * PIECES_PER_THREAD;
        this.vms = new ProcessVm[threads];
        for (int i = 0; i < threads; i++) {
            vms[i] = ProcessVm.forPid(pid);
        }
        this.pieceIovecs = new RemoteIovecs[maxPieces];
        this.pieceLocal = new long[maxPieces];
        this.pieceLength = new long[maxPieces];
        this.pieceRuns = new int[maxPieces];
        this.claimOrder = new int[maxPieces];
    }

    long piecesByHelpers() {
        return piecesByHelpers.get();
    }

    /**
     * Copies {@code batch[0..count)} ({@code total} bytes, page multiples) to {@code local}, as one call would
     * lay them out. True when every piece arrived whole; false when any came back short or failed (any errno:
     * the caller reads the batch again one call at a time, which sorts out vanished pages and errors).
     */
    boolean copy(PageRun[] batch, int count, long local, long total) {
        if (closed) {
            throw new IllegalStateException("read threads closed: pid=" + pid + " (the reader was closed, or its"
                    + " helper threads could not start; read with one thread: --read-threads 1)");
        }
        int n = layout(batch, count, local, total);
        if (helpers == null) {
            helpers = startHelpers();
        }
        pieceShort = false;
        completed.set(0);
        pieces = n;
        generation = (generation + 1) & GENERATION_MASK;
        if (generation == 0) {
            generation = 1; // 0 is what a fresh helper has seen
        }
        long gen = generation;
        state.set(gen << 32); // publishes the pieces
        for (Helper h : helpers) {
            if (h.parked) {
                LockSupport.unpark(h.thread);
            }
        }
        try {
            claim(0, gen);
        } finally {
            // also if this thread failed: until the helpers' pieces are done they write into the buffer
            awaitPieces(n);
        }
        return !pieceShort;
    }

    /**
     * Cuts the batch into up to {@code threads * m} pieces of about equal size (at page boundaries, splitting
     * runs); returns how many. Pieces are made in byte order and handed out round the threads' segments of the
     * batch (with 2 threads and 8 pieces: 0, 4, 1, 5, 2, 6, 3, 7), so that two threads copying at once work
     * about {@code total / threads} bytes apart: two calls on neighbouring pages of the target walk the same
     * page table page and spin on its lock in the kernel (measured: ~8% of each thread's time with pieces
     * claimed in byte order; none with halves).
     */
    private int layout(PageRun[] batch, int count, long local, long total) {
        int perThread = (int) Math.max(1, Math.min(PIECES_PER_THREAD, total / ((long) threads * MIN_PIECE_BYTES)));
        int n = threads * perThread;
        long share = (total / n + PAGE - 1) / PAGE * PAGE;
        int piece = 0;
        long filled = 0;
        startPiece(0, local);
        for (int i = 0; i < count; i++) {
            long address = batch[i].address();
            long left = batch[i].bytes();
            while (left > 0) {
                if (pieceLength[piece] == share && piece < n - 1) {
                    piece++;
                    startPiece(piece, local + filled);
                }
                long take = piece == n - 1 ? left : Math.min(left, share - pieceLength[piece]);
                pieceIovecs[piece].set(pieceRuns[piece]++, address, take);
                pieceLength[piece] += take;
                filled += take;
                address += take;
                left -= take;
            }
        }
        // rounding the share up can leave the last pieces empty: only the ones that exist are handed out
        int made = piece + 1;
        int claims = 0;
        for (int k = 0; k < n; k++) {
            int p = (k % threads) * perThread + k / threads;
            if (p < made) {
                claimOrder[claims++] = p;
            }
        }
        return made;
    }

    private void startPiece(int piece, long local) {
        if (pieceIovecs[piece] == null) {
            // a piece holds at most the batch's runs; allocated on first use (16 bytes per entry)
            pieceIovecs[piece] = new RemoteIovecs(maxRunsPerPiece);
        }
        pieceLocal[piece] = local;
        pieceLength[piece] = 0;
        pieceRuns[piece] = 0;
    }

    /** Claims and copies pieces of batch {@code gen} until none is left; {@code thread} 0 is the caller. */
    private void claim(int thread, long gen) {
        while (true) {
            long s = state.get();
            if (s >>> 32 != gen) {
                return;
            }
            // read after the generation matched. If the caller has moved on since, every piece of gen was
            // claimed after s was read, so the CAS below fails: a successful claim is always of gen's layout
            int n = pieces;
            int k = (int) (s & GENERATION_MASK);
            if (k >= n) {
                return;
            }
            if (!state.compareAndSet(s, s + 1)) {
                continue;
            }
            int piece = claimOrder[k];
            boolean whole;
            try {
                Runnable hook = thread == 0 ? null : beforeHelperPiece;
                if (hook != null) {
                    hook.run();
                }
                whole = vms[thread].read(pieceLocal[piece], pieceLength[piece], pieceIovecs[piece], 0,
                        pieceRuns[piece]) == pieceLength[piece];
            } catch (NativeCallException e) {
                whole = false;
            } catch (RuntimeException | Error e) {
                // never leave the caller waiting for a piece: the one-call re-read reports what is wrong
                whole = false;
            }
            if (!whole) {
                pieceShort = true;
            }
            if (thread != 0) {
                piecesByHelpers.incrementAndGet();
            }
            if (completed.incrementAndGet() == n && thread != 0) {
                Thread w = waiter;
                if (w != null) {
                    LockSupport.unpark(w);
                }
            }
        }
    }

    /** Waits until {@code n} pieces are done, spinning first; an interrupt does not end the wait (it is kept). */
    private void awaitPieces(int n) {
        if (completed.get() == n) {
            return;
        }
        long deadline = System.nanoTime() + CALLER_SPIN_NANOS;
        int spins = 0;
        while (completed.get() != n) {
            Thread.onSpinWait();
            if ((++spins & 63) == 0 && System.nanoTime() - deadline > 0) {
                break;
            }
        }
        if (completed.get() == n) {
            return;
        }
        boolean interrupted = false;
        waiter = Thread.currentThread();
        try {
            while (completed.get() != n) {
                LockSupport.park(this);
                if (Thread.interrupted()) {
                    interrupted = true;
                }
            }
        } finally {
            waiter = null;
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private Helper[] startHelpers() {
        int id = IDS.incrementAndGet();
        Helper[] started = new Helper[threads - 1];
        try {
            for (int i = 0; i < started.length; i++) {
                Helper h = new Helper(i + 1);
                Thread t = new Thread(h, "pageflux-read-" + pid + "-" + id + "-" + (i + 1));
                t.setDaemon(true);
                h.thread = t;
                t.start();
                started[i] = h;
            }
        } catch (RuntimeException | Error e) {
            // e.g. no native thread could be made: stop the ones that started
            closed = true;
            for (Helper h : started) {
                if (h != null) {
                    LockSupport.unpark(h.thread);
                }
            }
            if (e instanceof OutOfMemoryError) {
                // "unable to create native thread": say whose and what to do
                throw new IllegalStateException("cannot start " + (threads - 1) + " read helper thread(s): pid=" + pid
                        + " cause=\"" + e.getMessage() + "\" (read with one thread: --read-threads 1, or raise the"
                        + " process's thread limit)", e);
            }
            throw e;
        }
        return started;
    }

    /** Stops the helpers (they exit at once: no batch is in flight between two {@link #copy} calls). */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (helpers != null) {
            for (Helper h : helpers) {
                LockSupport.unpark(h.thread);
            }
        }
    }

    private final class Helper implements Runnable {
        private final int index;
        Thread thread;
        /** Set before the helper parks (and re-checks for work), so that {@link #copy} knows to unpark it. */
        volatile boolean parked;

        Helper(int index) {
            this.index = index;
        }

        @Override
        public void run() {
            long seen = 0;
            while (!closed) {
                long gen = state.get() >>> 32;
                if (gen != seen) {
                    seen = gen;
                    claim(index, gen);
                    continue;
                }
                if (!spinFor(seen)) {
                    parked = true;
                    if (state.get() >>> 32 == seen && !closed) {
                        LockSupport.park(this);
                    }
                    parked = false;
                    Thread.interrupted(); // nobody should interrupt a helper; if it happens, don't spin on it
                }
            }
        }

        /** Spins until a batch newer than {@code seen} is published or close; false when the spin ran out. */
        private boolean spinFor(long seen) {
            long deadline = System.nanoTime() + HELPER_SPIN_NANOS;
            int spins = 0;
            while (state.get() >>> 32 == seen && !closed) {
                Thread.onSpinWait();
                if ((++spins & 63) == 0 && System.nanoTime() - deadline > 0) {
                    return false;
                }
            }
            return true;
        }
    }
}
