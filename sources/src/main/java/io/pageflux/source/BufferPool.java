package io.pageflux.source;

import io.pageflux.nativeio.NativeBuffers;
import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import reactor.core.Disposable;

/**
 * A fixed budget of direct buffers, all {@link #chunkSize()} bytes, allocated on first use and
 * reused afterwards; never more than {@link #capacity()} exist. This is what bounds a dump's
 * memory: a reader only reads into a buffer it got from {@link #tryAcquire()}, and a buffer comes
 * back only when every {@link PageChunk} sharing it has been released.
 *
 * <p>Thread-safe. Readers that find the pool empty register {@link #onRelease(Runnable)} to be
 * woken when a buffer returns, instead of blocking a thread.
 */
public final class BufferPool {

    private final int chunkSize;
    private final int capacity;
    private final ConcurrentLinkedQueue<PooledBuffer> free = new ConcurrentLinkedQueue<>();
    private final AtomicInteger allocated = new AtomicInteger();
    private final AtomicInteger leased = new AtomicInteger();
    private final AtomicInteger peakLeased = new AtomicInteger();
    private final AtomicLong acquisitions = new AtomicLong();
    private final AtomicLong waits = new AtomicLong();
    private final CopyOnWriteArrayList<Runnable> releaseListeners = new CopyOnWriteArrayList<>();

    private BufferPool(int chunkSize, int capacity) {
        this.chunkSize = chunkSize;
        this.capacity = capacity;
    }

    /**
     * A pool of {@code budget / chunkSize} buffers of {@code chunkSize} bytes.
     *
     * @throws IllegalArgumentException if the chunk size is not a positive multiple of the page size
     *                                  (at most 1 GiB), or the budget holds less than one chunk
     */
    public static BufferPool create(DataSize budget, DataSize chunkSize) {
        long chunk = chunkSize.bytes();
        if (chunk <= 0 || chunk % PageRun.PAGE_SIZE != 0 || chunk > (1L << 30)) {
            throw new IllegalArgumentException("chunk size " + chunkSize + " must be a multiple of the page size ("
                    + PageRun.PAGE_SIZE + " B) between 4 KiB and 1 GiB");
        }
        if (budget.bytes() < chunk) {
            throw new IllegalArgumentException("budget " + budget + " is smaller than one chunk (" + chunkSize
                    + "): raise the budget to at least " + chunkSize + " or lower the chunk size");
        }
        long count = budget.bytes() / chunk;
        if (count > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("budget " + budget + " holds too many chunks of " + chunkSize);
        }
        return new BufferPool((int) chunk, (int) count);
    }

    /**
     * A leased buffer, or {@code null} when all {@link #capacity()} buffers are leased. The
     * returned buffer is cleared (position 0, limit = capacity) and has one reference.
     */
    public PooledBuffer tryAcquire() {
        PooledBuffer buffer = free.poll();
        if (buffer == null) {
            int n;
            do {
                n = allocated.get();
                if (n >= capacity) {
                    return null;
                }
            } while (!allocated.compareAndSet(n, n + 1));
            ByteBuffer direct = ByteBuffer.allocateDirect(chunkSize);
            buffer = new PooledBuffer(this, direct, NativeBuffers.address(direct));
        }
        buffer.lease();
        int now = leased.incrementAndGet();
        peakLeased.accumulateAndGet(now, Math::max);
        acquisitions.incrementAndGet();
        return buffer;
    }

    /** Called by {@link PooledBuffer} when its last reference is released. */
    void giveBack(PooledBuffer buffer) {
        free.offer(buffer);
        leased.decrementAndGet();
        for (Runnable listener : releaseListeners) {
            listener.run();
        }
    }

    /**
     * Runs {@code listener} (on the releasing thread) every time a buffer returns to the pool,
     * until the returned handle is disposed. Listeners must be quick: schedule work, don't do it.
     */
    public Disposable onRelease(Runnable listener) {
        releaseListeners.add(listener);
        return () -> releaseListeners.remove(listener);
    }

    /** Counts one time a reader had demand but found no free buffer. */
    public void recordWait() {
        waits.incrementAndGet();
    }

    public int chunkSize() {
        return chunkSize;
    }

    /** How many buffers the budget allows. */
    public int capacity() {
        return capacity;
    }

    public DataSize budget() {
        return DataSize.ofBytes((long) chunkSize * capacity);
    }

    public int leasedBuffers() {
        return leased.get();
    }

    public long leasedBytes() {
        return (long) leased.get() * chunkSize;
    }

    public int peakLeasedBuffers() {
        return peakLeased.get();
    }

    public long peakLeasedBytes() {
        return (long) peakLeased.get() * chunkSize;
    }

    /** Buffers allocated so far (never more than {@link #capacity()}). */
    public int allocatedBuffers() {
        return allocated.get();
    }

    public long acquisitions() {
        return acquisitions.get();
    }

    public long waits() {
        return waits.get();
    }

    @Override
    public String toString() {
        return "BufferPool[chunk=" + DataSize.format(chunkSize) + " capacity=" + capacity + " leased="
                + leased.get() + " peak=" + peakLeased.get() + "]";
    }
}
