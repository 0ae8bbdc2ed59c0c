package io.pageflux.nativeio;

import java.lang.ref.Reference;
import java.nio.ByteBuffer;
import jnr.ffi.Pointer;

/**
 * A zeroed block of native memory that one object owns for the arguments and results of its system calls
 * (an iovec array, a {@code pm_scan_arg}, a result vector): a direct {@link ByteBuffer}, freed by the JDK's
 * cleaner once the block is unreachable, read and written through a jnr {@link Pointer} in host byte order.
 *
 * <p>Not jnr's {@code Memory.allocateDirect(runtime, size, true)}: jnr frees those blocks with its own
 * finalizer machinery, whose first use starts a thread and initializes {@code java.util.logging} — 10 ms or
 * more of a fresh JVM's time, spent on the reading thread right before a CLI dump's first copy. Direct
 * buffers are already what the pipeline's page buffers are.
 *
 * <p>The kernel sees only the address: after a system call that used it, call {@link #keepAlive()} so that
 * the block cannot be collected (and freed) while the call runs, even when its owner is no longer used.
 * Read and write it through the accessors below, which keep it allocated until the access is done: the
 * {@link #pointer()} does not refer to the memory's owner, so an access through it alone could meet freed
 * memory once nothing else uses the block.
 */
final class NativeBlock {

    private final ByteBuffer memory;
    private final Pointer pointer;

    /**
     * @param bytes size, at least 1
     */
    NativeBlock(int bytes) {
        if (bytes < 1) {
            throw new IllegalArgumentException("native block size must be positive: bytes=" + bytes);
        }
        this.memory = ByteBuffer.allocateDirect(bytes);      // zeroed by the JDK
        this.pointer = Native.pointer(NativeBuffers.address(memory), bytes);
    }

    /** Bounds-checked typed access to the block (host byte order); pass it to calls that take a pointer. */
    Pointer pointer() {
        return pointer;
    }

    long address() {
        return pointer.address();
    }

    int size() {
        return memory.capacity();
    }

    long getLong(long offset) {
        long value = pointer.getLong(offset);
        Reference.reachabilityFence(memory);
        return value;
    }

    int getInt(long offset) {
        int value = pointer.getInt(offset);
        Reference.reachabilityFence(memory);
        return value;
    }

    void putLong(long offset, long value) {
        pointer.putLong(offset, value);
        Reference.reachabilityFence(memory);
    }

    void putInt(long offset, int value) {
        pointer.putInt(offset, value);
        Reference.reachabilityFence(memory);
    }

    /** Copies {@code count} longs from {@code offset} into {@code into[at..)}. */
    void getLongs(long offset, long[] into, int at, int count) {
        pointer.get(offset, into, at, count);
        Reference.reachabilityFence(memory);
    }

    /** The block stays allocated at least until this call: place it after each system call that uses it. */
    void keepAlive() {
        Reference.reachabilityFence(memory);
    }
}
