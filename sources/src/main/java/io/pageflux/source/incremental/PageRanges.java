package io.pageflux.source.incremental;

import io.pageflux.source.PageRun;
import java.util.Arrays;

/**
 * Ascending, non-overlapping {@code [start, end)} ranges of page-aligned user-space addresses, two
 * {@code long}s per range: what the soft-dirty path works on while the target is frozen, so that its cost
 * follows the number of ranges the kernel reports, not the number of pages (a 64 GiB mapping with three
 * dirty ranges is three entries). Ranges that touch are merged as they are added. Reusable
 * ({@link #clear()}); not thread-safe.
 */
public final class PageRanges {

    private static final int PAGE = PageRun.PAGE_SIZE;

    /** {@code start, end} pairs. */
    private long[] bounds;
    private int size;

    public PageRanges() {
        this(16);
    }

    /** Room for {@code ranges} ranges before the array grows. */
    public PageRanges(int ranges) {
        bounds = new long[Math.max(2, ranges * 2)];
    }

    /**
     * Appends {@code [start, end)}; merged with the last range if they touch. An empty range is ignored.
     *
     * @throws IllegalArgumentException if the bounds are not page aligned, {@code end < start}, or the range
     *                                  starts before the end of the last one (ranges must come in order)
     */
    public PageRanges add(long start, long end) {
        if (start % PAGE != 0 || end % PAGE != 0 || end < start || start < 0) {
            throw new IllegalArgumentException(String.format("range start=0x%x end=0x%x is not a page-aligned"
                    + " user-space range", start, end));
        }
        if (start == end) {
            return this;
        }
        if (size > 0) {
            long lastEnd = bounds[2 * size - 1];
            if (start < lastEnd) {
                throw new IllegalArgumentException(String.format("range start=0x%x end=0x%x is not after the last"
                        + " range, which ends at 0x%x: ranges must be added in ascending order", start, end, lastEnd));
            }
            if (start == lastEnd) {
                bounds[2 * size - 1] = end;
                return this;
            }
        }
        if (2 * size == bounds.length) {
            bounds = Arrays.copyOf(bounds, bounds.length * 2);
        }
        bounds[2 * size] = start;
        bounds[2 * size + 1] = end;
        size++;
        return this;
    }

    /**
     * Appends the parts of {@code other}'s ranges that lie in {@code [from, to)}: a binary search for the
     * first, then one step per range appended.
     */
    public PageRanges addAll(PageRanges other, long from, long to) {
        for (int i = other.firstEndingAfter(from); i < other.size && other.start(i) < to; i++) {
            add(Math.max(other.start(i), from), Math.min(other.end(i), to));
        }
        return this;
    }

    /** Number of ranges. */
    public int size() {
        return size;
    }

    public boolean isEmpty() {
        return size == 0;
    }

    /** Start of range {@code i} (inclusive). */
    public long start(int i) {
        check(i);
        return bounds[2 * i];
    }

    /** End of range {@code i} (exclusive). */
    public long end(int i) {
        check(i);
        return bounds[2 * i + 1];
    }

    /** Pages in all ranges. */
    public long pages() {
        long n = 0;
        for (int i = 0; i < size; i++) {
            n += (bounds[2 * i + 1] - bounds[2 * i]) / PAGE;
        }
        return n;
    }

    /** Pages of the ranges that lie in {@code [from, to)}. */
    public long pagesWithin(long from, long to) {
        long n = 0;
        for (int i = firstEndingAfter(from); i < size && bounds[2 * i] < to; i++) {
            n += (Math.min(bounds[2 * i + 1], to) - Math.max(bounds[2 * i], from)) / PAGE;
        }
        return n;
    }

    /** Forgets every range, keeping the array. */
    public void clear() {
        size = 0;
    }

    /** Bytes of the backing array: what these ranges cost in memory (16 bytes per range of capacity). */
    long memoryBytes() {
        return (long) bounds.length * Long.BYTES;
    }

    /** Index of the first range whose end is after {@code address}, or {@link #size()}. */
    int firstEndingAfter(long address) {
        int lo = 0;
        int hi = size;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (bounds[2 * mid + 1] <= address) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    private void check(int i) {
        if (i < 0 || i >= size) {
            throw new IndexOutOfBoundsException("range " + i + " of " + size);
        }
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof PageRanges other && other.size == size
                && Arrays.equals(bounds, 0, 2 * size, other.bounds, 0, 2 * size);
    }

    @Override
    public int hashCode() {
        int h = size;
        for (int i = 0; i < 2 * size; i++) {
            h = 31 * h + Long.hashCode(bounds[i]);
        }
        return h;
    }

    @Override
    public String toString() {
        StringBuilder s = new StringBuilder("PageRanges[");
        for (int i = 0; i < size; i++) {
            s.append(i == 0 ? "" : " ").append(String.format("0x%x-0x%x", bounds[2 * i], bounds[2 * i + 1]));
        }
        return s.append(']').toString();
    }
}
