package io.pageflux.source;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Consecutive bytes of one or more {@link PageRun}s, read into one pooled buffer: run {@code i}'s
 * bytes follow run {@code i-1}'s, starting at offset 0 of {@link #data()}.
 *
 * <p><b>Ownership.</b> A chunk holds a lease on its buffer. Whoever holds the chunk last calls
 * {@link #release()}, also on error and cancel ({@code doOnDiscard(PageChunk.class, PageChunk::release)}).
 * {@code release()} is idempotent for one chunk object. To hand the same bytes to several
 * consumers, give each its own {@link #retain()}ed view: the buffer goes back to the pool when
 * every view is released.
 */
public final class PageChunk {

    private final PooledBuffer lease;
    private final int length;
    private final List<PageRun> runs;
    private final long sequence;
    private final AtomicBoolean released = new AtomicBoolean();

    private PageChunk(PooledBuffer lease, int length, List<PageRun> runs, long sequence) {
        this.lease = lease;
        this.length = length;
        this.runs = runs;
        this.sequence = sequence;
    }

    /**
     * Wraps the first {@code length} bytes of a leased buffer. Takes over the caller's reference.
     *
     * @throws IllegalArgumentException if the runs' pages do not add up to {@code length}
     */
    public static PageChunk of(PooledBuffer lease, int length, List<PageRun> runs, long sequence) {
        long bytes = 0;
        for (PageRun run : runs) {
            bytes += run.bytes();
        }
        if (bytes != length || length > lease.capacity()) {
            throw new IllegalArgumentException("chunk " + sequence + ": runs hold " + bytes + " bytes but length="
                    + length + " (buffer capacity " + lease.capacity() + ")");
        }
        return new PageChunk(lease, length, List.copyOf(runs), sequence);
    }

    /** The runs, in the order their bytes appear in {@link #data()}. */
    public List<PageRun> runs() {
        return runs;
    }

    /** A read-only view of the bytes: position 0, limit {@link #bytes()}. */
    public ByteBuffer data() {
        checkLive();
        return lease.buffer().asReadOnlyBuffer().position(0).limit(length).slice();
    }

    /** Native address of the first byte, for zero-copy native writes while the chunk is held. */
    public long address() {
        checkLive();
        return lease.address();
    }

    public int bytes() {
        return length;
    }

    public long pages() {
        return length / PageRun.PAGE_SIZE;
    }

    /** 0, 1, 2, ... in the order the source produced the chunks. */
    public long sequence() {
        return sequence;
    }

    /** Another view of the same bytes with its own reference; release both. */
    public PageChunk retain() {
        checkLive();
        lease.retain();
        return new PageChunk(lease, length, runs, sequence);
    }

    /** Gives this view's reference back; a second call does nothing. */
    public void release() {
        if (released.compareAndSet(false, true)) {
            lease.release();
        }
    }

    public boolean isReleased() {
        return released.get();
    }

    private void checkLive() {
        if (released.get()) {
            throw new IllegalStateException("chunk " + sequence + " was already released");
        }
    }

    @Override
    public String toString() {
        return "PageChunk[#" + sequence + " " + runs.size() + " runs, " + length + " bytes"
                + (released.get() ? ", released" : "") + "]";
    }
}
