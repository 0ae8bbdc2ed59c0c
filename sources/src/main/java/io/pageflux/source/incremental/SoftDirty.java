package io.pageflux.source.incremental;

import io.pageflux.nativeio.NativeCallException;
import io.pageflux.nativeio.PagemapScanner;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagefluxException;
import io.pageflux.source.ProcessGoneException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The kernel's soft-dirty bits, where the kernel has them ({@code CONFIG_MEM_SOFT_DIRTY}; x86_64 and
 * recent arm64 kernels, not ours): writing {@code 4} to {@code /proc/PID/clear_refs} clears the bit of
 * every page of the process, and any later write to a page sets bit 55 of its {@code /proc/PID/pagemap}
 * entry again. An incremental dump then needs to read only the soft-dirty pages; the others are
 * PE_PARENT holes. pageflux clears the bits while the target is frozen, after the scan, so that no write
 * falls between "scanned" and "cleared".
 *
 * <p>On a kernel without soft-dirty, clearing succeeds but does nothing and bit 55 stays 0 — every page
 * would look clean. {@link #supported()} must therefore be checked first: pageflux falls back to page
 * digests ({@link ChangeDetector}) there. {@link SoftDirtyDetector} uses these bits in an incremental dump,
 * through the {@link Kernel} seam ({@link #kernel()}, or a test double answering from recorded fixtures).
 */
public final class SoftDirty {

    /** Bit 55 of a {@code /proc/PID/pagemap} entry. */
    public static final long PM_SOFT_DIRTY = 1L << 55;
    /** Present (bit 63). */
    public static final long PM_PRESENT = 1L << 63;
    /** Swapped (bit 62). */
    public static final long PM_SWAPPED = 1L << 62;

    private SoftDirty() {
    }

    /**
     * What an incremental dump needs from the kernel's soft-dirty tracking, as one seam: whether it exists,
     * the pagemap entries (bit 55) of a frozen target, and clearing. {@link #kernel()} is the real one; tests
     * inject recorded pagemap fixtures (this machine's kernel has no soft-dirty bits).
     */
    public interface Kernel {

        /** Whether soft-dirty bits are tracked (see {@link SoftDirty#supported()}). */
        boolean supported();

        /** Opens the pagemap of {@code pid} for {@link Entries#read}; close it after the scan. */
        Entries open(int pid);

        /** Clears every soft-dirty bit of {@code pid} ({@code clear_refs 4}); called while it is frozen. */
        void clear(int pid);
    }

    /** The pagemap entries of one process. */
    public interface Entries extends AutoCloseable {

        /**
         * Reads the entries of {@code count} pages from {@code address} (page aligned) into
         * {@code into[0..count)}. Only bit 55 ({@link #PM_SOFT_DIRTY}) is used; the other bits may be 0.
         *
         * @throws ProcessGoneException if the process exited
         */
        void read(long address, long[] into, int count);

        @Override
        void close();
    }

    /** This kernel: {@link #supported()}, {@code /proc/PID/pagemap} read with {@code pread}, {@link #clear}. */
    public static Kernel kernel() {
        return KERNEL;
    }

    private static final Kernel KERNEL = new Kernel() {
        @Override
        public boolean supported() {
            return SoftDirty.supported();
        }

        @Override
        public Entries open(int pid) {
            return SoftDirty.open(pid, true);
        }

        @Override
        public void clear(int pid) {
            SoftDirty.clear(pid);
        }

        @Override
        public String toString() {
            return "SoftDirty.kernel()";
        }
    };

    /**
     * The soft-dirty bits of {@code pid}: with {@code PAGEMAP_SCAN} (one page-table walk that returns the
     * ranges of soft-dirty pages; {@code ioctl} true, falling back when the kernel lacks the ioctl or its
     * {@code PAGE_IS_SOFT_DIRTY} category), or by reading 8 bytes per page of {@code /proc/PID/pagemap}
     * (several times slower: the kernel formats every entry).
     */
    static Entries open(int pid, boolean ioctl) {
        PagemapScanner pagemap;
        try {
            pagemap = PagemapScanner.open(pid, RANGES_PER_SCAN, ENTRIES_PER_READ);
        } catch (NativeCallException e) {
            throw new PagefluxException("cannot open the pagemap to read soft-dirty bits: pid=" + pid
                    + " file=/proc/" + pid + "/pagemap: " + e.getMessage() + " (is the process alive? root or"
                    + " CAP_SYS_PTRACE needed)", e);
        }
        return new Entries() {
            private boolean useIoctl = ioctl;

            @Override
            public void read(long address, long[] into, int count) {
                if (useIoctl) {
                    try {
                        scan(address, into, count);
                        return;
                    } catch (NativeCallException e) {
                        if (e.errno() != io.pageflux.nativeio.Errno.ENOTTY
                                && e.errno() != io.pageflux.nativeio.Errno.EINVAL) {
                            throw failed(address, e);
                        }
                        useIoctl = false; // no PAGEMAP_SCAN, or no PAGE_IS_SOFT_DIRTY: read the entries
                    }
                }
                int done = 0;
                while (done < count) {
                    long at = address + (long) done * PageRun.PAGE_SIZE;
                    int got;
                    try {
                        got = pagemap.readEntries(at, count - done);
                    } catch (NativeCallException e) {
                        throw failed(at, e);
                    }
                    if (got == 0) {
                        throw new ProcessGoneException(pid, String.format("reason=exited file=/proc/%d/pagemap"
                                + " ended at address=0x%x while reading soft-dirty bits", pid, at));
                    }
                    pagemap.copyEntries(into, done, got);
                    done += got;
                }
            }

            /** Bit 55 set on the pages of the ranges the kernel reports soft-dirty; the other bits 0. */
            private void scan(long address, long[] into, int count) {
                java.util.Arrays.fill(into, 0, count, 0L);
                long end = address + (long) count * PageRun.PAGE_SIZE;
                long cursor = address;
                while (Long.compareUnsigned(cursor, end) < 0) {
                    int n = pagemap.scan(cursor, end, 0, PagemapScanner.PAGE_IS_SOFT_DIRTY,
                            PagemapScanner.PAGE_IS_SOFT_DIRTY, PagemapScanner.PAGE_IS_SOFT_DIRTY);
                    for (int i = 0; i < n; i++) {
                        int from = (int) ((pagemap.regionStart(i) - address) / PageRun.PAGE_SIZE);
                        int to = (int) ((pagemap.regionEnd(i) - address) / PageRun.PAGE_SIZE);
                        for (int p = from; p < to; p++) {
                            into[p] = PM_SOFT_DIRTY;
                        }
                    }
                    long walkEnd = pagemap.walkEnd();
                    if (Long.compareUnsigned(walkEnd, cursor) <= 0) {
                        throw new PagefluxException(String.format("PAGEMAP_SCAN made no progress reading soft-dirty"
                                + " bits: pid=%d start=0x%x end=0x%x walk_end=0x%x", pid, cursor, end, walkEnd));
                    }
                    cursor = walkEnd;
                }
            }

            private PagefluxException failed(long address, NativeCallException e) {
                if (e.errno() == io.pageflux.nativeio.Errno.ESRCH) {
                    return new ProcessGoneException(pid, String.format("reason=exited file=/proc/%d/pagemap while"
                            + " reading soft-dirty bits at address=0x%x", pid, address), e);
                }
                return new PagefluxException(String.format("cannot read the soft-dirty bits: pid=%d address=0x%x"
                        + " file=/proc/%d/pagemap: %s", pid, address, pid, e.getMessage()), e);
            }

            @Override
            public void close() {
                pagemap.close();
            }
        };
    }

    /** Ranges one {@code PAGEMAP_SCAN} call may return. */
    private static final int RANGES_PER_SCAN = 512;
    /** Pagemap entries per {@code pread} (8 bytes each: 32 MiB of address space per call). */
    private static final int ENTRIES_PER_READ = 8192;

    /**
     * Whether this kernel tracks soft-dirty bits: with {@code CONFIG_MEM_SOFT_DIRTY} every new mapping
     * carries the {@code sd} VmFlag, so this JVM's own {@code /proc/self/smaps} shows it on some region.
     */
    public static boolean supported() {
        try {
            return supported(Files.readString(Path.of("/proc/self/smaps"), StandardCharsets.ISO_8859_1));
        } catch (IOException e) {
            return false;
        }
    }

    /** {@link #supported()} for a given smaps text: some {@code VmFlags:} line lists {@code sd}. */
    static boolean supported(String smaps) {
        for (String line : smaps.split("\n")) {
            if (line.startsWith("VmFlags:")) {
                for (String flag : line.substring("VmFlags:".length()).trim().split(" ")) {
                    if (flag.equals("sd")) {
                        return true;
                    }
                }
            }
        }
        return false;
    }

    /**
     * Clears the soft-dirty bits of every page of {@code pid} ({@code echo 4 > /proc/PID/clear_refs}).
     * Call it while the target is frozen.
     *
     * @throws ProcessGoneException if the process is gone
     * @throws PagefluxException    if the write is refused (needs the right to ptrace the target)
     */
    public static void clear(int pid) {
        Path file = Path.of("/proc", Integer.toString(pid), "clear_refs");
        try {
            Files.writeString(file, "4", StandardCharsets.US_ASCII);
        } catch (NoSuchFileException e) {
            throw new ProcessGoneException(pid, "reason=exited file=" + file + " is gone");
        } catch (IOException e) {
            throw new PagefluxException("cannot clear soft-dirty bits: pid=" + pid + " file=" + file + ": "
                    + e.getMessage() + " (needs the same rights as ptrace: root or CAP_SYS_PTRACE)", e);
        }
    }

    /**
     * Splits a run into its soft-dirty pages (kept with the run's flags: to be read and written) and its
     * clean pages (as {@link PageFlags#PE_PARENT} runs: holes), given the run's pagemap entries.
     * A page that is clean but not in the parent ({@code inParent} false for it) must be read: holes are
     * only for pages the parent has.
     *
     * @param run      the run the scan planned
     * @param entries  its {@code /proc/PID/pagemap} entries, one per page ({@code entries.length >= run.pages()})
     * @param inParent whether the parent dump has the page at a given address
     * @return the pieces of {@code run}, in address order, covering it exactly
     */
    public static List<PageRun> split(PageRun run, long[] entries, java.util.function.LongPredicate inParent) {
        if (entries.length < run.pages()) {
            throw new IllegalArgumentException("run " + run + " has " + run.pages() + " pages but only " + entries.length
                    + " pagemap entries were given");
        }
        List<PageRun> out = new ArrayList<>();
        long start = 0;
        boolean startHole = false;
        for (long p = 0; p < run.pages(); p++) {
            boolean hole = (entries[(int) p] & PM_SOFT_DIRTY) == 0
                    && inParent.test(run.pagemapVaddr() + p * PageRun.PAGE_SIZE);
            if (p == 0) {
                startHole = hole;
            } else if (hole != startHole) {
                out.add(piece(run, start, p - start, startHole));
                start = p;
                startHole = hole;
            }
        }
        out.add(piece(run, start, run.pages() - start, startHole));
        return out;
    }

    /** How many pages of {@code entries} are soft-dirty. */
    public static long dirtyPages(long[] entries) {
        long n = 0;
        for (long e : entries) {
            if ((e & PM_SOFT_DIRTY) != 0) {
                n++;
            }
        }
        return n;
    }

    private static PageRun piece(PageRun run, long from, long count, boolean hole) {
        PageRun p = from == 0 && count == run.pages() ? run : run.slice(from, count);
        return hole ? new PageRun(p.address(), p.pages(), p.pagemap(), p.pagemapVaddr(), PageFlags.PE_PARENT) : p;
    }
}
