package io.pageflux.source.freeze;

/**
 * Memory of the target that the kernel writes by itself, even while the target does nothing: each
 * thread's registered {@code struct rseq} (restartable sequences; glibc 2.35+ registers one per thread),
 * whose CPU and node fields are updated whenever the thread is scheduled on another CPU. A comparison of
 * memory taken at two moments (e.g. {@code pageflux verify} after a dump) must not count these bytes as
 * a difference: a restorer re-registers rseq anyway.
 *
 * @param tid     the thread it belongs to
 * @param address first byte
 * @param size    bytes
 * @param what    e.g. {@code rseq}
 */
public record KernelWrittenArea(int tid, long address, int size, String what) {

    public long end() {
        return address + size;
    }

    /** Whether the byte at {@code address} lies in this area. */
    public boolean contains(long byteAddress) {
        return byteAddress >= address && byteAddress < end();
    }
}
