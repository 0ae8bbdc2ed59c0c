package io.pageflux.nativeio;


/**
 * A batch of {@code struct iovec} describing ranges of the <i>target's</i> address space, laid out
 * in ONE contiguous native block so a whole batch goes to {@code process_vm_readv(2)} as a single
 * pointer. Reused from call to call: the reader rewrites entries in place and passes a window
 * ({@code first}, {@code count}) of the block to {@link ProcessVm#read}.
 *
 * <pre>
 *  struct iovec (x86_64 / arm64, LP64)           the block: capacity() entries back to back
 *  offset 0                 8                16   +-----------+-----------+-----------+---
 *         +-----------------+-----------------+   | iovec[0]  | iovec[1]  | iovec[2]  | ...
 *         | void *iov_base  | size_t iov_len  |   +-----------+-----------+-----------+---
 *         +-----------------+-----------------+   0           16          32
 * </pre>
 *
 * Not thread-safe: one reader owns one instance. The native block (a direct buffer) is freed when this
 * object is garbage collected.
 */
public final class RemoteIovecs {

    /** Offset of {@code iov_base} inside one entry. */
    public static final int BASE_OFFSET = 0;
    /** Offset of {@code iov_len} inside one entry. */
    public static final int LENGTH_OFFSET = 8;
    /** Size of one {@code struct iovec}. */
    public static final int ENTRY_SIZE = 16;
    /** {@code IOV_MAX} on Linux: the most entries one {@code process_vm_readv} call accepts. */
    public static final int MAX_ENTRIES = 1024;

    static {
        // the offsets above assume 8-byte pointers and size_t; refuse to scribble on 32-bit layouts
        if (Native.RUNTIME.addressSize() != 8) {
            throw new ExceptionInInitializerError("struct iovec layout assumes a 64-bit runtime: addressSize="
                    + Native.RUNTIME.addressSize());
        }
    }

    private final NativeBlock block;
    private final int capacity;

    /**
     * @param capacity entries, 1..{@value #MAX_ENTRIES}
     */
    public RemoteIovecs(int capacity) {
        if (capacity < 1 || capacity > MAX_ENTRIES) {
            throw new IllegalArgumentException("iovec capacity must be 1.." + MAX_ENTRIES + ": capacity=" + capacity);
        }
        this.capacity = capacity;
        this.block = new NativeBlock(capacity * ENTRY_SIZE);
    }

    public int capacity() {
        return capacity;
    }

    /** Writes entry {@code index}: {@code length} bytes at the target's address {@code base}. */
    public void set(int index, long base, long length) {
        checkIndex(index);
        if (length < 0) {
            throw new IllegalArgumentException("iovec length must not be negative: index=" + index + " length=" + length);
        }
        long offset = (long) index * ENTRY_SIZE;
        block.putLong(offset + BASE_OFFSET, base);
        block.putLong(offset + LENGTH_OFFSET, length);
    }

    public long base(int index) {
        checkIndex(index);
        return block.getLong((long) index * ENTRY_SIZE + BASE_OFFSET);
    }

    public long length(int index) {
        checkIndex(index);
        return block.getLong((long) index * ENTRY_SIZE + LENGTH_OFFSET);
    }

    /** Sum of the lengths of entries {@code first .. first+count-1}. */
    public long totalLength(int first, int count) {
        checkWindow(first, count);
        long total = 0;
        for (int i = first; i < first + count; i++) {
            total += length(i);
        }
        return total;
    }

    /** Keeps the block allocated at least until here: called after each system call given its address. */
    void keepAlive() {
        block.keepAlive();
    }

    /** Native address of entry {@code first}, for the syscall. */
    long address(int first) {
        return block.address() + (long) first * ENTRY_SIZE;
    }

    void checkWindow(int first, int count) {
        if (first < 0 || count < 1 || first + count > capacity) {
            throw new IndexOutOfBoundsException("iovec window first=" + first + " count=" + count + " capacity="
                    + capacity);
        }
    }

    private void checkIndex(int index) {
        if (index < 0 || index >= capacity) {
            throw new IndexOutOfBoundsException("iovec index=" + index + " capacity=" + capacity);
        }
    }
}
