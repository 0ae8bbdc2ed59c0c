package io.pageflux.nativeio;

import jnr.ffi.Pointer;

/**
 * {@code /proc/PID/pagemap} of one process, opened once, read in two ways:
 * <ul>
 *   <li>{@link #scan} — the {@code PAGEMAP_SCAN} ioctl (Linux 6.7+): the kernel filters pages by category
 *       and returns <em>ranges</em> into one native vector owned by this object;</li>
 *   <li>{@link #readEntries} — {@code pread(2)} of the classic one-u64-per-page entries into a second
 *       native buffer owned by this object.</li>
 * </ul>
 * Results stay valid until the next call of the same method. Not thread-safe. Errors are
 * {@link NativeCallException}s carrying errno and {@code key=value} facts; the layers above turn them
 * into domain exceptions.
 *
 * <pre>
 * struct pm_scan_arg (96 bytes, all u64, host byte order)
 *   0 size | 8 flags | 16 start | 24 end | 32 walk_end | 40 vec | 48 vec_len | 56 max_pages
 *  64 category_inverted | 72 category_mask | 80 category_anyof_mask | 88 return_mask
 * struct page_region (24 bytes)
 *   0 start | 8 end | 16 categories
 * </pre>
 */
public final class PagemapScanner implements AutoCloseable {

    /** {@code PAGE_IS_*} categories of {@code PAGEMAP_SCAN}. */
    public static final long PAGE_IS_WPALLOWED = 1L << 0;
    public static final long PAGE_IS_WRITTEN = 1L << 1;
    public static final long PAGE_IS_FILE = 1L << 2;
    public static final long PAGE_IS_PRESENT = 1L << 3;
    public static final long PAGE_IS_SWAPPED = 1L << 4;
    public static final long PAGE_IS_PFNZERO = 1L << 5;
    public static final long PAGE_IS_HUGE = 1L << 6;
    /** Soft-dirty (never set on a kernel without {@code CONFIG_MEM_SOFT_DIRTY}). */
    public static final long PAGE_IS_SOFT_DIRTY = 1L << 7;
    /** Guard region ({@code MADV_GUARD_INSTALL}); kernels before 6.14 reject it with EINVAL. */
    public static final long PAGE_IS_GUARD = 1L << 8;

    /** Bits of a {@code /proc/PID/pagemap} entry. */
    public static final long PM_PRESENT = 1L << 63;
    public static final long PM_SWAPPED = 1L << 62;
    /** File page or shared anonymous page (set for every page of a shmem mapping). */
    public static final long PM_FILE_OR_SHARED_ANON = 1L << 61;
    /** Guard region ({@code MADV_GUARD_INSTALL}): no page, reading it faults. */
    public static final long PM_GUARD_REGION = 1L << 58;
    /** Bits 0–54: the page frame number of a present page (0 without CAP_SYS_ADMIN). */
    public static final long PM_PFN_MASK = (1L << 55) - 1;

    public static final int PM_SCAN_ARG_SIZE = 96;
    public static final int PAGE_REGION_SIZE = 24;
    /** {@code _IOWR('f', 16, struct pm_scan_arg)}. */
    public static final long PAGEMAP_SCAN = iowr('f', 16, PM_SCAN_ARG_SIZE);

    private static final int PAGE = 4096;
    private static final int O_RDONLY_CLOEXEC = 0x80000;

    private static final int ARG_SIZE = 0, ARG_FLAGS = 8, ARG_START = 16, ARG_END = 24, ARG_WALK_END = 32,
            ARG_VEC = 40, ARG_VEC_LEN = 48, ARG_MAX_PAGES = 56, ARG_INVERTED = 64, ARG_MASK = 72,
            ARG_ANYOF = 80, ARG_RETURN = 88;

    private final int pid;
    private final String path;
    private final NativeBlock argBlock = new NativeBlock(PM_SCAN_ARG_SIZE);
    private final Pointer arg = argBlock.pointer();
    private final NativeBlock vecBlock;
    private final Pointer vec;
    private final int vecCapacity;
    private final NativeBlock entriesBlock;
    private final Pointer entries;
    private final int entryCapacity;
    private int fd;

    private PagemapScanner(int pid, String path, int fd, int vecCapacity, int entryCapacity) {
        this.pid = pid;
        this.path = path;
        this.fd = fd;
        this.vecCapacity = vecCapacity;
        this.entryCapacity = entryCapacity;
        this.vecBlock = new NativeBlock(vecCapacity * PAGE_REGION_SIZE);
        this.vec = vecBlock.pointer();
        this.entriesBlock = new NativeBlock(entryCapacity * 8);
        this.entries = entriesBlock.pointer();
    }

    /**
     * Opens {@code /proc/PID/pagemap}.
     *
     * @param vecCapacity   ranges one {@link #scan} call may return (the native vector: 24 bytes each)
     * @param entryCapacity entries one {@link #readEntries} call may read (8 bytes each)
     * @throws NativeCallException {@code open} failed: ENOENT (no such pid), EACCES/EPERM (not allowed)
     */
    public static PagemapScanner open(int pid, int vecCapacity, int entryCapacity) {
        return open(pid, "/proc/" + pid + "/pagemap", vecCapacity, entryCapacity);
    }

    private static PagemapScanner open(int pid, String path, int vecCapacity, int entryCapacity) {
        if (vecCapacity < 1 || entryCapacity < 1) {
            throw new IllegalArgumentException("capacities must be positive: vecCapacity=" + vecCapacity
                    + " entryCapacity=" + entryCapacity);
        }
        int fd = Native.LIBC.open(path, O_RDONLY_CLOEXEC);
        if (fd < 0) {
            throw new NativeCallException("open", Native.lastErrno(), "pid=" + pid + " path=" + path);
        }
        return new PagemapScanner(pid, path, fd, vecCapacity, entryCapacity);
    }

    public int pid() {
        return pid;
    }

    public int vecCapacity() {
        return vecCapacity;
    }

    public int entryCapacity() {
        return entryCapacity;
    }

    /**
     * One {@code PAGEMAP_SCAN} call over {@code [start, end)}: the pages that have at least one category of
     * {@code anyofMask} and whose categories in {@code mask} equal those not in {@code inverted}. At most
     * {@link #vecCapacity()} ranges come back; {@link #walkEnd()} says where the kernel stopped (call again
     * from there while it is below {@code end}).
     *
     * @return the number of ranges now in the vector ({@link #regionStart(int)} ...)
     * @throws NativeCallException ENOTTY/EINVAL: the kernel has no PAGEMAP_SCAN; ESRCH: the process exited
     */
    public int scan(long start, long end, long inverted, long mask, long anyofMask, long returnMask) {
        checkOpen();
        arg.putLong(ARG_SIZE, PM_SCAN_ARG_SIZE);
        arg.putLong(ARG_FLAGS, 0);
        arg.putLong(ARG_START, start);
        arg.putLong(ARG_END, end);
        arg.putLong(ARG_WALK_END, 0);
        arg.putLong(ARG_VEC, vec.address());
        arg.putLong(ARG_VEC_LEN, vecCapacity);
        arg.putLong(ARG_MAX_PAGES, 0);
        arg.putLong(ARG_INVERTED, inverted);
        arg.putLong(ARG_MASK, mask);
        arg.putLong(ARG_ANYOF, anyofMask);
        arg.putLong(ARG_RETURN, returnMask);
        int n = Native.LIBC.ioctl(fd, PAGEMAP_SCAN, arg);
        argBlock.keepAlive();
        vecBlock.keepAlive();
        if (n < 0) {
            throw new NativeCallException("ioctl(PAGEMAP_SCAN)", Native.lastErrno(), String.format(
                    "pid=%d path=%s start=0x%x end=0x%x", pid, path, start, end));
        }
        return n;
    }

    /** Where the last {@link #scan} stopped; equal to its {@code end} when it walked the whole range. */
    public long walkEnd() {
        return argBlock.getLong(ARG_WALK_END);
    }

    public long regionStart(int i) {
        return vecBlock.getLong((long) i * PAGE_REGION_SIZE);
    }

    public long regionEnd(int i) {
        return vecBlock.getLong((long) i * PAGE_REGION_SIZE + 8);
    }

    public long regionCategories(int i) {
        return vecBlock.getLong((long) i * PAGE_REGION_SIZE + 16);
    }

    /**
     * Reads the pagemap entries of up to {@code count} pages from {@code address} (page aligned) with one
     * {@code pread}; {@code count} is capped at {@link #entryCapacity()}.
     *
     * @return entries read: fewer than asked (even 0) only past the end of the user address space or when the
     *         process has exited
     */
    public int readEntries(long address, int count) {
        checkOpen();
        int n = Math.min(count, entryCapacity);
        long offset = Long.divideUnsigned(address, PAGE) * 8;
        long got = Native.LIBC.pread(fd, entries, (long) n * 8, offset);
        entriesBlock.keepAlive();
        if (got < 0) {
            throw new NativeCallException("pread", Native.lastErrno(), String.format(
                    "pid=%d path=%s address=0x%x pages=%d", pid, path, address, n));
        }
        return (int) (got / 8);
    }

    /** Entry {@code i} of the last {@link #readEntries} call. */
    public long entry(int i) {
        return entriesBlock.getLong((long) i * 8);
    }

    /** Copies entries {@code 0..count)} of the last {@link #readEntries} call into {@code into[offset..)}: one call. */
    public void copyEntries(long[] into, int offset, int count) {
        checkOpen();
        entriesBlock.getLongs(0, into, offset, count);
    }

    /** The generic Linux {@code _IOWR(type, nr, size)} encoding (x86, arm64, riscv): dir 30–31, size 16–29, type 8–15, nr 0–7. */
    static long iowr(char type, int nr, int size) {
        long read = 2, write = 1;                      // _IOC_READ, _IOC_WRITE
        return ((read | write) << 30) | ((long) size << 16) | ((long) type << 8) | nr;
    }

    private void checkOpen() {
        if (fd < 0) {
            throw new IllegalStateException("pagemap scanner is closed: pid=" + pid + " path=" + path);
        }
    }

    @Override
    public void close() {
        if (fd >= 0) {
            Native.LIBC.close(fd);
            fd = -1;
        }
    }

    // ---------------------------------------------------------------- the shared zero page

    /**
     * The PFN of the kernel's shared zero page, or {@code -1} when this process cannot see PFNs (they read
     * as 0 without CAP_SYS_ADMIN) or the kernel did not map it.
     *
     * <p>How it is learned (once per JVM): a private anonymous page that is read but never written maps the
     * one shared zero page (on every architecture where the kernel uses a zero page at all), so we map a
     * fresh {@code PROT_READ} page in our own process, read one byte and look its PFN up in
     * {@code /proc/self/pagemap}. The same is done for a 2 MiB-aligned {@code MADV_HUGEPAGE} range to learn
     * the transparent huge zero page, when THP and its zero page are enabled.
     */
    public static long zeroPagePfn() {
        return ZeroPages.SMALL;
    }

    /** The first of the 512 PFNs of the transparent huge zero page, or {@code -1} when it is not in use. */
    public static long hugeZeroPagePfn() {
        return ZeroPages.HUGE;
    }

    /** Whether a present page with this PFN is the shared zero page (small or huge); false when PFNs are hidden. */
    public static boolean isZeroPfn(long pfn) {
        if (pfn == 0) {
            return false;
        }
        return pfn == ZeroPages.SMALL || (ZeroPages.HUGE > 0 && pfn >= ZeroPages.HUGE && pfn < ZeroPages.HUGE + 512);
    }

    private static final class ZeroPages {
        static final long SMALL;
        static final long HUGE;

        private static final int PROT_READ = 1, MAP_PRIVATE = 0x02, MAP_ANONYMOUS = 0x20, MADV_HUGEPAGE = 14;
        private static final long HUGE_SIZE = 2L << 20;

        static {
            long small = -1, huge = -1;
            int self = (int) ProcessHandle.current().pid();
            try (PagemapScanner pm = open(self, "/proc/self/pagemap", 1, 1)) {
                small = pfnOfReadOnlyTouch(pm, PAGE, PAGE, false);
                if (small > 0) {
                    long h = pfnOfReadOnlyTouch(pm, 2 * HUGE_SIZE, HUGE_SIZE, true);
                    // a huge zero page is a distinct, 512-aligned block; anything else means THP did not kick in
                    if (h > 0 && h != small && (h & 511) == 0) {
                        huge = h;
                    }
                }
            } catch (NativeCallException e) {
                small = -1;
            }
            SMALL = small;
            HUGE = huge;
        }

        /** Maps {@code length} bytes PROT_READ, reads the first byte at {@code align}, returns its PFN or -1. */
        private static long pfnOfReadOnlyTouch(PagemapScanner pm, long length, long align, boolean thp) {
            Pointer mapped = Native.LIBC.mmap(null, length, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (mapped == null || mapped.address() == -1) {
                return -1;
            }
            long base = mapped.address();
            try {
                long at = (base + align - 1) & -align;
                if (thp) {
                    Native.LIBC.madvise(Native.pointer(at, align), align, MADV_HUGEPAGE);
                }
                Native.pointer(at, 1).getByte(0);         // a read fault: maps the zero page
                if (pm.readEntries(at, 1) != 1) {
                    return -1;
                }
                long e = pm.entry(0);
                return (e & PM_PRESENT) != 0 && (e & PM_PFN_MASK) != 0 ? e & PM_PFN_MASK : -1;
            } finally {
                Native.LIBC.munmap(Native.pointer(base, length), length);
            }
        }
    }
}
