package io.pageflux.nativeio;

import com.kenai.jffi.MemoryIO;
import java.lang.ref.Cleaner;
import java.nio.ByteBuffer;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import jnr.ffi.Pointer;

/**
 * Direct buffers in memory of their own mapping, aligned to 2 MiB and advised
 * {@code MADV_HUGEPAGE}, so the kernel backs them with transparent huge pages where it can.
 *
 * <p><b>Why.</b> An {@code O_DIRECT} write hands the device the physical pages of the buffer:
 * one segment per physically contiguous run. A 4 MiB buffer of scattered 4 KiB pages becomes
 * several requests of a few hundred KiB; a buffer on two 2 MiB huge pages becomes one. On the
 * development VM (virtio-blk) a C loop writing 1 GiB with {@code O_DIRECT} from a huge-page
 * buffer ran 2.1–2.9 GiB/s, from an ordinary {@code malloc} buffer 1.7–1.9 GiB/s; a cold
 * {@code pageflux dump --out DIR} went from 0.83–1.08 s to 0.75–0.83 s for 1 GiB (README,
 * Benchmarks). The kernel's copy into the buffer ({@code process_vm_readv}) also takes fewer
 * TLB misses.
 *
 * <p><b>Memory.</b> The mapping is exactly {@code size} bytes (the alignment slack is unmapped
 * at once) and, like any anonymous mapping, takes memory only as it is written: a 4 MiB buffer
 * holds two huge pages once filled, the same 4 MiB as with small pages. It is zero-filled.
 * Where transparent huge pages are off ({@code never}) or none is free, the kernel uses small
 * pages: the buffer works the same, only without the gain.
 *
 * <p><b>Release.</b> An owner that knows when nobody uses the buffer any more (a buffer pool
 * closing) unmaps it at once with {@link Mapping#unmap()}: nothing else would, until a GC
 * happens to find the buffer unreachable, and mapped memory is not counted against
 * {@code -XX:MaxDirectMemorySize}, so nothing triggers that GC. As a fallback, the mapping is
 * unmapped by a {@link Cleaner} when the buffer — and every slice or duplicate of it, which all
 * refer to it — has become unreachable, as the JDK frees {@link ByteBuffer#allocateDirect}
 * memory. Do not keep its address beyond either.
 */
public final class HugePageBuffers {

    /** The huge page size this class aligns to (x86-64 and arm64 with 4 KiB base pages). */
    public static final int HUGE_PAGE_SIZE = 2 << 20;

    private static final int PROT_READ_WRITE = 0x1 | 0x2;
    private static final int MAP_PRIVATE_ANONYMOUS = 0x02 | 0x20;
    private static final int MADV_HUGEPAGE = 14;
    private static final Cleaner CLEANER = Cleaner.create();
    private static final AtomicLong MAPPED = new AtomicLong();
    /** Start addresses of the buffers mapped now. */
    private static final Set<Long> LIVE = ConcurrentHashMap.newKeySet();

    private HugePageBuffers() {
    }

    /**
     * A zeroed direct buffer of {@code size} bytes at a 2 MiB-aligned address, advised for huge
     * pages; see the class description.
     *
     * @param size a positive multiple of {@link #HUGE_PAGE_SIZE}
     * @throws IllegalArgumentException if {@code size} is not a positive multiple of 2 MiB
     * @throws OutOfMemoryError         if the kernel refuses the mapping (as {@code allocateDirect} would)
     */
    public static ByteBuffer allocate(int size) {
        return map(size).buffer();
    }

    /**
     * Like {@link #allocate(int)}, with the handle that unmaps the buffer deterministically.
     *
     * @param size a positive multiple of {@link #HUGE_PAGE_SIZE}
     * @throws IllegalArgumentException if {@code size} is not a positive multiple of 2 MiB
     * @throws OutOfMemoryError         if the kernel refuses the mapping
     */
    public static Mapping map(int size) {
        if (size <= 0 || size % HUGE_PAGE_SIZE != 0) {
            throw new IllegalArgumentException("size=" + size + ": a huge-page buffer is a positive multiple of "
                    + HUGE_PAGE_SIZE + " bytes (2 MiB); use ByteBuffer.allocateDirect for other sizes");
        }
        long length = (long) size + HUGE_PAGE_SIZE;
        Pointer mapped = Native.LIBC.mmap(null, length, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS, -1, 0);
        if (mapped == null || mapped.address() == -1) {
            throw new OutOfMemoryError("cannot map a huge-page buffer: size=" + size + " errno=" + Native.lastErrno()
                    + ": lower the budget (--budget) or free memory");
        }
        long base = mapped.address();
        long start = (base + HUGE_PAGE_SIZE - 1) & -(long) HUGE_PAGE_SIZE;
        long end = start + size;
        // keep exactly [start, end): the slack before and after is never used
        if (start > base) {
            Native.LIBC.munmap(Native.pointer(base, start - base), start - base);
        }
        if (base + length > end) {
            Native.LIBC.munmap(Native.pointer(end, base + length - end), base + length - end);
        }
        // advice only: refused where transparent huge pages are off, and the buffer works anyway
        Native.LIBC.madvise(Native.pointer(start, size), size, MADV_HUGEPAGE);
        ByteBuffer buffer = MemoryIO.getInstance().newDirectByteBuffer(start, size);
        MAPPED.addAndGet(size);
        LIVE.add(start);
        // the action must not refer to the buffer, or the buffer would never become unreachable
        return new Mapping(buffer, CLEANER.register(buffer, new Unmap(start, size)));
    }

    /**
     * A buffer from {@link #map(int)} and the handle that unmaps it.
     *
     * @param buffer    the buffer, {@code size} bytes
     * @param cleanable unmaps the buffer's memory, once: {@link #unmap()}
     */
    public record Mapping(ByteBuffer buffer, Cleaner.Cleanable cleanable) {

        /**
         * Unmaps the buffer now (later calls, and the fallback cleaner, do nothing). Only when
         * nobody — no slice, duplicate, native call or other thread — touches the buffer any
         * more: an access to unmapped memory crashes the JVM.
         */
        public void unmap() {
            cleanable.clean();
        }
    }

    /** Bytes of huge-page buffers mapped now in this JVM (unmapped ones are not counted). */
    public static long mappedBytes() {
        return MAPPED.get();
    }

    /**
     * Whether a buffer allocated here at {@code address} is still mapped (false once its cleaner
     * has unmapped it, and for addresses that never were such a buffer's).
     */
    public static boolean isMapped(long address) {
        return LIVE.contains(address);
    }

    /** Unmaps one buffer's memory; run once by the cleaner. */
    private record Unmap(long address, int size) implements Runnable {
        @Override
        public void run() {
            LIVE.remove(address);
            Native.LIBC.munmap(Native.pointer(address, size), size);
            MAPPED.addAndGet(-size);
        }
    }
}
