package io.pageflux.sink.file;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.UnpooledByteBufAllocator;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The {@code O_DIRECT} staging memory of one writer (one dump's image directory, one page-server
 * session), shared by all the {@link DirectFileOutput}s it opens.
 *
 * <p><b>Why.</b> A direct write needs block-aligned memory, so small or unaligned writes are
 * copied into a 1 MiB aligned staging buffer first ({@link DirectFileOutput}). A writer opens one
 * pages file per pagemap — the task's and one per shared-memory object — and a page-server session
 * stages everything (network data is never aligned). One buffer per file would hold
 * {@code files × 1 MiB} of direct memory outside the dump's buffer pool: 100 MiB for a target with
 * 100 shared-memory objects, against a budget of perhaps 64 MiB.
 *
 * <p><b>How.</b> This object owns a fixed number of aligned buffers ({@link #DEFAULT_BUFFERS}
 * unless told otherwise) and lends them to whichever files are staging. When a file needs one and
 * all are lent, the buffer of the least recently used holder is taken: that file first writes the
 * whole blocks it has staged and keeps only the rest — less than one file-system block, so at most
 * 64 KiB and, with 4 KiB pages on 4 KiB blocks, usually nothing — in a small array of its own,
 * which goes back in front of its next staged bytes when it borrows a buffer again. The bytes of
 * each file are the same as with a buffer of its own; the cost of a switch is one earlier, shorter
 * write. Two buffers by default, so the task's pagemap keeps its buffer while the writes of
 * shared objects alternate with it.
 *
 * <p><b>Memory bound.</b> At most
 * {@code buffers × (STAGING_BYTES + 64 KiB)} of direct memory ({@link #BYTES_PER_BUFFER} each,
 * allocated on first use, so a writer whose files only receive large aligned writes allocates none),
 * plus on the heap less than one block per open file that has given its buffer up — whatever the
 * number of files: {@code 2 × 1.06 MiB} per writer by default.
 *
 * <p><b>Release.</b> {@link #release()} frees the buffers at once (not when the garbage collector
 * gets round to it; Netty's unpooled direct buffers, as the page server's read buffers, free their
 * memory on release): the writer calls it when it ends — commit, abort or failure. Files finished
 * before that have given their buffer back; a file still holding one is detached: its staged bytes
 * are gone, so a later write or finish of it fails instead of leaving a file that looks complete.
 *
 * <p><b>Threads.</b> Used by one thread at a time, like the files that share it (the image
 * directory writer's lock serializes them); the counters may be read from any thread.
 */
public final class StagingBuffers implements AutoCloseable {

    /** Buffers per writer unless told otherwise: the task's pagemap and one shared object at a time. */
    public static final int DEFAULT_BUFFERS = 2;

    /** Direct memory one buffer takes: {@link DirectFileOutput#STAGING_BYTES} plus room to align it to any block. */
    public static final int BYTES_PER_BUFFER = DirectFileOutput.STAGING_BYTES + DirectFileOutput.MAX_ALIGNMENT;

    /** Staging memory allocated and not yet released, all writers of this JVM together. */
    private static final AtomicLong JVM_ALLOCATED = new AtomicLong();

    /** One buffer and the file that has borrowed it, if any. */
    static final class Lease {
        private ByteBuf allocation; // as allocated: what is freed
        private ByteBuffer aligned;    // the aligned part handed to files
        private DirectFileOutput holder;
        private long lastUse;

        ByteBuffer buffer() {
            return aligned;
        }
    }

    private final Lease[] leases;
    private final AtomicLong allocated = new AtomicLong();
    private volatile long peak;
    private long clock;
    private long takeovers;
    private boolean released;

    /** {@link #DEFAULT_BUFFERS} buffers. */
    public StagingBuffers() {
        this(DEFAULT_BUFFERS);
    }

    /**
     * @param buffers how many 1 MiB buffers may exist at once (1 to 64); more means fewer early
     *                writes when many files stage in turn, and more memory
     */
    public StagingBuffers(int buffers) {
        if (buffers < 1 || buffers > 64) {
            throw new IllegalArgumentException("staging buffers=" + buffers + ": choose 1 to 64");
        }
        leases = new Lease[buffers];
        for (int i = 0; i < buffers; i++) {
            leases[i] = new Lease();
        }
    }

    /** The bound on this object's direct memory: {@code buffers × BYTES_PER_BUFFER}. */
    public long maxBytes() {
        return (long) leases.length * BYTES_PER_BUFFER;
    }

    /** Direct memory allocated now (0 before the first staged write and after {@link #release()}). */
    public long allocatedBytes() {
        return allocated.get();
    }

    /** The most direct memory allocated at once; never above {@link #maxBytes()}. */
    public long peakAllocatedBytes() {
        return peak;
    }

    /** How many times a buffer was taken from one file for another (tests). */
    synchronized long takeovers() {
        return takeovers;
    }

    /** Staging memory allocated and not yet released by all writers of this JVM together. */
    public static long allocatedBytesInJvm() {
        return JVM_ALLOCATED.get();
    }

    /**
     * Lends a buffer to {@code file}, which holds none: a free one, else the least recently used
     * holder's, which first writes out its whole blocks ({@link DirectFileOutput#surrender()}).
     *
     * @throws IOException           if that holder's write fails (it keeps its buffer then)
     * @throws IllegalStateException after {@link #release()}
     */
    synchronized Lease lend(DirectFileOutput file) throws IOException {
        if (released) {
            throw new IllegalStateException("staging buffers already released: file=" + file.file()
                    + " is written after its image directory was committed or aborted");
        }
        Lease pick = free(true);            // free and allocated
        if (pick == null) {
            pick = free(false);             // free, to allocate
        }
        if (pick == null) {
            pick = leastRecentlyUsed();     // all lent: take one back
        }
        if (pick.holder != null) {
            pick.holder.surrender();
            pick.holder = null;
            takeovers++;
        }
        if (pick.aligned == null) {
            pick.allocation = UnpooledByteBufAllocator.DEFAULT.directBuffer(BYTES_PER_BUFFER, BYTES_PER_BUFFER);
            pick.aligned = pick.allocation.nioBuffer(0, BYTES_PER_BUFFER).alignedSlice(DirectFileOutput.MAX_ALIGNMENT);
            long now = allocated.addAndGet(BYTES_PER_BUFFER);
            JVM_ALLOCATED.addAndGet(BYTES_PER_BUFFER);
            peak = Math.max(peak, now);
        }
        pick.holder = file;
        pick.lastUse = ++clock;
        pick.aligned.clear().limit(DirectFileOutput.STAGING_BYTES);
        return pick;
    }

    private Lease free(boolean allocatedAlready) {
        for (Lease l : leases) {
            if (l.holder == null && (l.aligned != null) == allocatedAlready) {
                return l;
            }
        }
        return null;
    }

    private Lease leastRecentlyUsed() {
        Lease oldest = leases[0];
        for (Lease l : leases) {
            if (l.lastUse < oldest.lastUse) {
                oldest = l;
            }
        }
        return oldest;
    }

    /** Marks {@code lease} as used now (the least recently used holder is the one to give up its buffer). */
    void touch(Lease lease) {
        lease.lastUse = ++clock;
    }

    /** {@code file} is done with {@code lease} (finished or closed); its content is no longer needed. */
    synchronized void giveBack(Lease lease, DirectFileOutput file) {
        if (lease.holder == file) {
            lease.holder = null;
        }
    }

    /**
     * Frees every buffer now. Files still holding one are detached (their staged bytes are lost: a
     * later write or finish fails). Idempotent; afterwards no file can borrow a buffer.
     */
    public synchronized void release() {
        released = true;
        for (Lease l : leases) {
            if (l.holder != null) {
                l.holder.detach();
                l.holder = null;
            }
            if (l.allocation != null) {
                ByteBuf a = l.allocation;
                l.allocation = null;
                l.aligned = null;
                allocated.addAndGet(-BYTES_PER_BUFFER);
                JVM_ALLOCATED.addAndGet(-BYTES_PER_BUFFER);
                a.release(); // frees the memory now
            }
        }
    }

    /** {@link #release()}. */
    @Override
    public void close() {
        release();
    }

    @Override
    public synchronized String toString() {
        return "StagingBuffers[buffers=" + leases.length + " allocatedBytes=" + allocated.get()
                + (released ? " released" : "") + "]";
    }
}
