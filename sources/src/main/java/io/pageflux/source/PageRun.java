package io.pageflux.source;

/**
 * A run of consecutive pages to dump: {@code pages} pages starting at {@code address} in the
 * target's address space, recorded in {@code pagemap} at {@code pagemapVaddr} (the same address
 * for a task pagemap, the offset inside the object for a shared-anonymous one) with CRIU
 * {@link PageFlags}.
 */
public record PageRun(long address, long pages, PagemapId pagemap, long pagemapVaddr, int flags) {

    public static final int PAGE_SIZE = 4096;

    public PageRun {
        if (pages <= 0) {
            throw new IllegalArgumentException("a run has at least one page: address=0x"
                    + Long.toHexString(address) + " pages=" + pages);
        }
    }

    public long bytes() {
        return pages * PAGE_SIZE;
    }

    public long end() {
        return address + bytes();
    }

    /** The part of this run from page {@code from} (inclusive) for {@code count} pages. */
    public PageRun slice(long from, long count) {
        if (from < 0 || count <= 0 || from + count > pages) {
            throw new IndexOutOfBoundsException("slice from=" + from + " count=" + count + " of pages=" + pages);
        }
        long delta = from * PAGE_SIZE;
        return new PageRun(address + delta, count, pagemap, pagemapVaddr + delta, flags);
    }

    @Override
    public String toString() {
        return String.format("PageRun[0x%x +%d pages -> %s@0x%x %s]", address, pages, pagemap, pagemapVaddr,
                PageFlags.describe(flags));
    }
}
