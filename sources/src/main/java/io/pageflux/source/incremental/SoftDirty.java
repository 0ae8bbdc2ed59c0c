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

        /**
         * Called before {@code pid} is frozen by a dump that will {@link #clear} its bits while it is frozen:
         * work that must come before the clear but need not stop the target belongs here (the
         * {@link SoftDirtyLedger}'s record is a file write). Nothing by default.
         */
        default void prepareClear(int pid) {
        }
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

        /**
         * Appends the soft-dirty pages of {@code [start, end)} (page aligned) to {@code into} as ranges, in
         * ascending order and inside {@code [start, end)}: what the frozen step of an incremental dump uses, so
         * that its cost follows the number of dirty ranges. The kernel's {@link SoftDirty#kernel()} passes on the
         * ranges of {@code PAGEMAP_SCAN}; this default reads the entries with {@link #read} (up to 8192 at a
         * time, for a test double that answers per page) and merges them into ranges as it goes.
         *
         * @throws ProcessGoneException if the process exited
         */
        default void readDirty(long start, long end, PageRanges into) {
            requireRange(start, end);
            long pages = (end - start) / PageRun.PAGE_SIZE;
            long[] block = new long[(int) Math.min(pages, ENTRIES_PER_READ)];
            for (long done = 0; done < pages; ) {
                int n = (int) Math.min(block.length, pages - done);
                long at = start + done * PageRun.PAGE_SIZE;
                read(at, block, n);
                addDirty(at, block, 0, n, into);
                done += n;
            }
        }

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
            /** What one {@link #scan} found, before it is handed on (a failed ioctl leaves {@code into} as it was). */
            private final PageRanges found = new PageRanges(RANGES_PER_SCAN);
            /** Entries of one {@code pread} of the pagemap file, when the ioctl cannot be used. */
            private long[] block;

            @Override
            public void read(long address, long[] into, int count) {
                long end = address + (long) count * PageRun.PAGE_SIZE;
                if (scanned(address, end)) {
                    java.util.Arrays.fill(into, 0, count, 0L);
                    for (int i = 0; i < found.size(); i++) {
                        java.util.Arrays.fill(into, (int) ((found.start(i) - address) / PageRun.PAGE_SIZE),
                                (int) ((found.end(i) - address) / PageRun.PAGE_SIZE), PM_SOFT_DIRTY);
                    }
                    return;
                }
                readFile(address, count, (at, offset, got) -> pagemap.copyEntries(into, offset, got));
            }

            @Override
            public void readDirty(long start, long end, PageRanges into) {
                requireRange(start, end);
                if (scanned(start, end)) {
                    into.addAll(found, start, end);
                    return;
                }
                // 8 bytes per page by nature; merged into ranges block by block, never a per-page array
                if (block == null) {
                    block = new long[ENTRIES_PER_READ];
                }
                for (long at = start; at < end; ) {
                    int count = (int) Math.min((end - at) / PageRun.PAGE_SIZE, ENTRIES_PER_READ);
                    readFile(at, count, (a, offset, got) -> {
                        pagemap.copyEntries(block, offset, got);
                        addDirty(a, block, offset, got, into);
                    });
                    at += (long) count * PageRun.PAGE_SIZE;
                }
            }

            /**
             * The soft-dirty ranges of {@code [start, end)} in {@link #found}, with {@code PAGEMAP_SCAN}; false
             * (and from then on) where the kernel lacks the ioctl or its {@code PAGE_IS_SOFT_DIRTY} category.
             */
            private boolean scanned(long start, long end) {
                if (!useIoctl) {
                    return false;
                }
                found.clear();
                try {
                    scan(start, end);
                    return true;
                } catch (NativeCallException e) {
                    if (e.errno() != io.pageflux.nativeio.Errno.ENOTTY && e.errno() != io.pageflux.nativeio.Errno.EINVAL) {
                        throw failed(start, e);
                    }
                    useIoctl = false; // no PAGEMAP_SCAN, or no PAGE_IS_SOFT_DIRTY: read the entries
                    return false;
                }
            }

            /** The ranges the kernel reports soft-dirty, one ioctl per {@value #RANGES_PER_SCAN} of them. */
            private void scan(long start, long end) {
                long cursor = start;
                while (Long.compareUnsigned(cursor, end) < 0) {
                    int n = pagemap.scan(cursor, end, 0, PagemapScanner.PAGE_IS_SOFT_DIRTY,
                            PagemapScanner.PAGE_IS_SOFT_DIRTY, PagemapScanner.PAGE_IS_SOFT_DIRTY);
                    for (int i = 0; i < n; i++) {
                        found.add(Math.max(pagemap.regionStart(i), start), Math.min(pagemap.regionEnd(i), end));
                    }
                    long walkEnd = pagemap.walkEnd();
                    if (Long.compareUnsigned(walkEnd, cursor) <= 0) {
                        throw new PagefluxException(String.format("PAGEMAP_SCAN made no progress reading soft-dirty"
                                + " bits: pid=%d start=0x%x end=0x%x walk_end=0x%x", pid, cursor, end, walkEnd));
                    }
                    cursor = walkEnd;
                }
            }

            /**
             * Reads the entries of {@code count} pages from {@code address} from the pagemap file, one
             * {@code pread} of up to {@value #ENTRIES_PER_READ} at a time, handing each to {@code block}
             * ({@code offset}: pages done before it).
             */
            private void readFile(long address, int count, EntryBlock block) {
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
                    block.accept(at, done, got);
                    done += got;
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
    static final int RANGES_PER_SCAN = 512;
    /** Pagemap entries per {@code pread} (8 bytes each: 32 MiB of address space per call). */
    static final int ENTRIES_PER_READ = 8192;

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

    /** Entries {@code [offset, offset + count)} of a read, the first at {@code address}. */
    @FunctionalInterface
    private interface EntryBlock {
        void accept(long address, int offset, int count);
    }

    private static void requireRange(long start, long end) {
        if (start % PageRun.PAGE_SIZE != 0 || end % PageRun.PAGE_SIZE != 0 || Long.compareUnsigned(end, start) < 0) {
            throw new IllegalArgumentException(String.format("start=0x%x end=0x%x is not a page-aligned range",
                    start, end));
        }
    }

    /**
     * Appends the soft-dirty pages among {@code entries[from, from + count)} (the first at {@code address}) to
     * {@code into}, consecutive ones as one range.
     */
    static void addDirty(long address, long[] entries, int from, int count, PageRanges into) {
        int end = from + count;
        int i = from;
        while (i < end) {
            if ((entries[i] & PM_SOFT_DIRTY) == 0) {
                i++;
                continue;
            }
            int j = i + 1;
            while (j < end && (entries[j] & PM_SOFT_DIRTY) != 0) {
                j++;
            }
            into.add(address + (long) (i - from) * PageRun.PAGE_SIZE, address + (long) (j - from) * PageRun.PAGE_SIZE);
            i = j;
        }
    }

    /**
     * Splits a run into its soft-dirty pages (kept with the run's flags: to be read and written) and its
     * clean pages (as {@link PageFlags#PE_PARENT} runs: holes), given the run's pagemap entries.
     * A page that is clean but not in the parent ({@code inParent} false for it) must be read: holes are
     * only for pages the parent has. The per-page form of {@link #split(PageRun, PageRanges, PageRanges)}.
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
        int pages = (int) run.pages();
        PageRanges dirty = new PageRanges();
        addDirty(run.address(), entries, 0, pages, dirty);
        PageRanges parent = new PageRanges();
        for (int p = 0; p < pages; p++) {
            long vaddr = run.pagemapVaddr() + (long) p * PageRun.PAGE_SIZE;
            if (inParent.test(vaddr)) {
                parent.add(vaddr, vaddr + PageRun.PAGE_SIZE);
            }
        }
        return split(run, dirty, parent);
    }

    /**
     * Splits a run into the pages to read (kept with the run's flags) and {@link PageFlags#PE_PARENT} holes:
     * a page is a hole if the parent has it and it is not soft-dirty. One merge walk over the two range
     * lists: the work follows the number of ranges, not of pages.
     *
     * @param run    the run the scan planned
     * @param dirty  its soft-dirty pages, as addresses of the target ({@link PageRun#address()}); ranges outside
     *               the run are ignored
     * @param parent the pages the parent has, as addresses of the run's pagemap ({@link PageRun#pagemapVaddr()},
     *               an offset for shared anonymous memory); ranges outside the run are ignored
     * @return the pieces of {@code run}, in address order, covering it exactly, no two neighbours of one kind
     */
    public static List<PageRun> split(PageRun run, PageRanges dirty, PageRanges parent) {
        List<PageRun> out = new ArrayList<>();
        split(run, dirty, parent, (address, pages, hole) -> {
            PageRun p = pages == run.pages() ? run : run.slice((address - run.address()) / PageRun.PAGE_SIZE, pages);
            out.add(hole ? new PageRun(p.address(), p.pages(), p.pagemap(), p.pagemapVaddr(), PageFlags.PE_PARENT) : p);
        });
        return out;
    }

    /** Receives the pieces of a run from {@link #split(PageRun, PageRanges, PageRanges, PieceSink)}. */
    @FunctionalInterface
    interface PieceSink {
        /** {@code pages} pages from {@code address}: a hole if {@code hole}, else to be read. */
        void piece(long address, long pages, boolean hole);
    }

    /**
     * {@link #split(PageRun, PageRanges, PageRanges)} handing each piece to {@code sink} in address order,
     * without making objects for it.
     *
     * @return the pages of the holes
     */
    static long split(PageRun run, PageRanges dirty, PageRanges parent, PieceSink sink) {
        long base = run.address();
        long end = run.end();
        long shift = run.pagemapVaddr() - base; // parent address - shift = target address
        long done = base; // the pages before it are in a piece
        long holes = 0;
        int d = dirty.firstEndingAfter(base);
        for (int p = parent.firstEndingAfter(base + shift); p < parent.size() && parent.start(p) - shift < end; p++) {
            long s = Math.max(parent.start(p) - shift, base);
            long e = Math.min(parent.end(p) - shift, end);
            // [s, e) minus the dirty ranges are holes; d only moves forward, over both lists. Two holes never
            // touch: a dirty page or a page the parent lacks lies between them (PageRanges merges touching ranges)
            while (s < e) {
                while (d < dirty.size() && dirty.end(d) <= s) {
                    d++;
                }
                boolean dirtyInside = d < dirty.size() && dirty.start(d) < e;
                long holeEnd = dirtyInside ? Math.max(dirty.start(d), s) : e;
                if (holeEnd > s) {
                    if (s > done) {
                        sink.piece(done, (s - done) / PageRun.PAGE_SIZE, false);
                    }
                    sink.piece(s, (holeEnd - s) / PageRun.PAGE_SIZE, true);
                    holes += (holeEnd - s) / PageRun.PAGE_SIZE;
                    done = holeEnd;
                }
                s = dirtyInside ? Math.min(dirty.end(d), e) : e;
            }
        }
        if (done < end) {
            sink.piece(done, (end - done) / PageRun.PAGE_SIZE, false);
        }
        return holes;
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
}
