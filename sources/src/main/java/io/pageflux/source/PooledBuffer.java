package io.pageflux.source;

import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A direct buffer leased from a {@link BufferPool}, reference counted: it returns to the pool when
 * the count drops to zero. Readers fill {@link #buffer()} (or write to {@link #address()}
 * natively) and wrap it in a {@link PageChunk}; everybody else deals with chunks.
 */
public final class PooledBuffer {

    private final BufferPool pool;
    private final ByteBuffer buffer;
    private final long address;
    private final AtomicInteger refs = new AtomicInteger();
    /** Frees the buffer's memory now; a no-op for buffers the GC frees (allocateDirect). */
    private final Runnable unmap;

    PooledBuffer(BufferPool pool, ByteBuffer buffer, long address) {
        this(pool, buffer, address, () -> { });
    }

    PooledBuffer(BufferPool pool, ByteBuffer buffer, long address, Runnable unmap) {
        this.pool = pool;
        this.buffer = buffer;
        this.address = address;
        this.unmap = unmap;
    }

    /** Called by the closed pool, only while the buffer is back in it (no reference left). */
    void unmap() {
        unmap.run();
    }

    void lease() {
        buffer.clear();
        refs.set(1);
    }

    /** The whole writable buffer, {@link BufferPool#chunkSize()} bytes. */
    public ByteBuffer buffer() {
        return buffer;
    }

    /** Native address of byte 0 of {@link #buffer()}. */
    public long address() {
        return address;
    }

    public int capacity() {
        return buffer.capacity();
    }

    void retain() {
        int n;
        do {
            n = refs.get();
            if (n <= 0) {
                throw new IllegalStateException("buffer already returned to the pool");
            }
        } while (!refs.compareAndSet(n, n + 1));
    }

    /** Drops one reference; the last one returns the buffer to its pool. */
    public void release() {
        int n = refs.decrementAndGet();
        if (n == 0) {
            pool.giveBack(this);
        } else if (n < 0) {
            throw new IllegalStateException("buffer released more often than retained");
        }
    }

    int references() {
        return refs.get();
    }
}
