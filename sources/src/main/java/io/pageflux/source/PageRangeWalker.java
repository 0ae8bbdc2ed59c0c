package io.pageflux.source;

import io.pageflux.nativeio.Errno;
import io.pageflux.nativeio.NativeCallException;
import io.pageflux.nativeio.PagemapScanner;
import io.pageflux.source.RegionDecision.PageSelection;

/**
 * Walks the dumpable pages of one address range ({@link #reset}) as maximal contiguous ranges
 * ({@link #next()}, then {@link #start()} / {@link #end()}), in ascending order, with constant memory:
 * the native buffers of one {@link PagemapScanner} are reused for every call. Two implementations:
 * the {@code PAGEMAP_SCAN} ioctl and reading {@code /proc/PID/pagemap}. Errors are
 * {@link NativeCallException}s; {@link PageScan} turns them into pageflux exceptions.
 */
abstract class PageRangeWalker {

    static final int PAGE = PageRun.PAGE_SIZE;

    final PagemapScanner pagemap;
    long start;
    long end;

    PageRangeWalker(PagemapScanner pagemap) {
        this.pagemap = pagemap;
    }

    /** Starts walking {@code [from, to)} for the pages {@code selection} wants (not {@link PageSelection#ALL}). */
    abstract void reset(long from, long to, PageSelection selection);

    /** Advances to the next maximal run of selected pages; false when the range is done. */
    abstract boolean next();

    long start() {
        return start;
    }

    long end() {
        return end;
    }

    long pages() {
        return (end - start) / PAGE;
    }

    abstract ScannerKind kind();

    // ------------------------------------------------------------------------------------------ ioctl

    /**
     * {@code PAGEMAP_SCAN}: the kernel keeps the pages that are present or swapped
     * ({@code category_anyof_mask}) and whose PFNZERO (and FILE, for private file mappings; GUARD where the
     * kernel knows it) category is clear ({@code category_inverted = category_mask}). It returns at most
     * {@code vec_len} ranges per call and where it stopped ({@code walk_end}); the ranges of consecutive calls
     * are joined here when they touch.
     */
    static final class Ioctl extends PageRangeWalker {

        private static final long ANY_OF = PagemapScanner.PAGE_IS_PRESENT | PagemapScanner.PAGE_IS_SWAPPED;

        /** GUARD until the kernel says it does not know that category (before Linux 6.14). */
        private long guard = PagemapScanner.PAGE_IS_GUARD;
        private long exclude;
        private long cursor;
        private long limit;
        private int count;
        private int index;
        private boolean pending;
        private long pendingStart;
        private long pendingEnd;

        Ioctl(PagemapScanner pagemap) {
            super(pagemap);
        }

        /**
         * Whether this kernel has the ioctl: one call over the first page of {@code address}.
         * ENOTTY (no such ioctl) or EINVAL (an older layout of the argument) mean no; other errors propagate.
         */
        boolean supported(long address) {
            try {
                call(address, address + PAGE, PagemapScanner.PAGE_IS_PFNZERO);
                return true;
            } catch (NativeCallException e) {
                if (e.errno() == Errno.ENOTTY || e.errno() == Errno.EINVAL) {
                    return false;
                }
                throw e;
            }
        }

        @Override
        void reset(long from, long to, PageSelection selection) {
            exclude = PagemapScanner.PAGE_IS_PFNZERO
                    | (selection == PageSelection.PRESENT_NOT_ZERO_NOT_FILE ? PagemapScanner.PAGE_IS_FILE : 0);
            cursor = from;
            limit = to;
            count = 0;
            index = 0;
            pending = false;
        }

        @Override
        boolean next() {
            if (!pending && !fetch()) {
                return false;
            }
            start = pendingStart;
            end = pendingEnd;
            pending = false;
            while (fetch()) {
                if (Long.compareUnsigned(pendingStart, end) > 0) {
                    pending = true;                 // the start of the next run, kept for the next call
                    return true;
                }
                // touching (the kernel split a run: full vector, category change) or, defensively, overlapping
                if (Long.compareUnsigned(pendingEnd, end) > 0) {
                    end = pendingEnd;
                }
            }
            return true;
        }

        /** The next range the kernel reports, into pendingStart/pendingEnd. */
        private boolean fetch() {
            while (index >= count) {
                if (Long.compareUnsigned(cursor, limit) >= 0) {
                    return false;
                }
                count = call(cursor, limit, exclude);
                index = 0;
                long walkEnd = pagemap.walkEnd();
                if (Long.compareUnsigned(walkEnd, cursor) <= 0 && count == 0) {
                    throw new IllegalStateException(String.format(
                            "PAGEMAP_SCAN made no progress: pid=%d start=0x%x end=0x%x walk_end=0x%x",
                            pagemap.pid(), cursor, limit, walkEnd));
                }
                cursor = walkEnd;
            }
            pendingStart = pagemap.regionStart(index);
            pendingEnd = pagemap.regionEnd(index);
            index++;
            return true;
        }

        private int call(long from, long to, long excluded) {
            long mask = excluded | guard;
            try {
                return pagemap.scan(from, to, mask, mask, ANY_OF, ANY_OF);
            } catch (NativeCallException e) {
                if (guard != 0 && e.errno() == Errno.EINVAL) {
                    guard = 0;                      // a kernel without the GUARD category: ask again without it
                    return pagemap.scan(from, to, excluded, excluded, ANY_OF, ANY_OF);
                }
                throw e;
            }
        }

        @Override
        ScannerKind kind() {
            return ScannerKind.PAGEMAP_SCAN;
        }
    }

    // ------------------------------------------------------------------------------------------ file

    /**
     * {@code /proc/PID/pagemap}, one u64 per page, read {@link PagemapScanner#entryCapacity()} pages per
     * {@code pread}. A page is selected when bit 63 (present) or 62 (swapped) is set, bit 58 (guard) is
     * clear, a present page's PFN is not the shared zero page's ({@link PagemapScanner#isZeroPfn}; PFNs are
     * visible to root only, without them zero pages cannot be told apart and are dumped as zeros), and for
     * private file mappings bit 61 (still the file's page) is clear. Bit 61 is not looked at otherwise:
     * it is set on every page of a shared anonymous mapping.
     */
    static final class PagemapFile extends PageRangeWalker {

        private final ProcessProbe probe;
        private boolean notFile;
        private long batchStart;
        private int count;
        private int index;
        private long limit;

        /** Tells whether the process still exists when pagemap reads return nothing. */
        interface ProcessProbe {
            /** Throws the matching exception if the process is gone; returns when it is alive. */
            void checkAlive(long address);
        }

        PagemapFile(PagemapScanner pagemap, ProcessProbe probe) {
            super(pagemap);
            this.probe = probe;
        }

        @Override
        void reset(long from, long to, PageSelection selection) {
            notFile = selection == PageSelection.PRESENT_NOT_ZERO_NOT_FILE;
            batchStart = from;
            count = 0;
            index = 0;
            limit = to;
        }

        @Override
        boolean next() {
            while (true) {
                if (!loaded()) {
                    return false;
                }
                if (selected(pagemap.entry(index))) {
                    break;
                }
                index++;
            }
            start = address();
            do {
                index++;
            } while (loaded() && selected(pagemap.entry(index)));
            end = address();
            return true;
        }

        private long address() {
            return batchStart + (long) index * PAGE;
        }

        /** Makes entry {@code index} available, reading the next batch if needed; false at the end. */
        private boolean loaded() {
            if (index < count) {
                return true;
            }
            batchStart += (long) count * PAGE;
            index = 0;
            count = 0;
            if (Long.compareUnsigned(batchStart, limit) >= 0) {
                return false;
            }
            long left = Long.divideUnsigned(limit - batchStart, PAGE);
            count = pagemap.readEntries(batchStart, (int) Math.min(left, pagemap.entryCapacity()));
            if (count == 0) {
                // end of file: the process exited (its mm is gone) or the range is past the user address space
                probe.checkAlive(batchStart);
                batchStart = limit;
                return false;
            }
            return true;
        }

        private boolean selected(long e) {
            boolean present = (e & PagemapScanner.PM_PRESENT) != 0;
            if (!present && (e & PagemapScanner.PM_SWAPPED) == 0) {
                return false;
            }
            if ((e & PagemapScanner.PM_GUARD_REGION) != 0) {
                return false;
            }
            if (present && PagemapScanner.isZeroPfn(e & PagemapScanner.PM_PFN_MASK)) {
                return false;                       // the PFN field of a swapped page is its swap slot, not a PFN
            }
            return !notFile || (e & PagemapScanner.PM_FILE_OR_SHARED_ANON) == 0;
        }

        @Override
        ScannerKind kind() {
            return ScannerKind.PAGEMAP_FILE;
        }
    }
}
