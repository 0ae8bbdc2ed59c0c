package io.pageflux.sink.criu;

import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.nio.file.Path;
import java.util.List;

/**
 * One pagemap image as read from disk by {@link ImageDirectory}.
 *
 * @param id        task or shared object, from the file name
 * @param file      the {@code pagemap-*.img} file
 * @param pagesId   the head's pages_id: the bytes are in {@code pages-<pagesId>.img}
 * @param entries   the entries in file order
 */
public record PagemapImage(PagemapId id, Path file, long pagesId, List<Entry> entries) {

    public PagemapImage {
        entries = List.copyOf(entries);
    }

    /**
     * One entry, normalized: the page count is field 5 ({@code nr_pages}) when present, else
     * field 2 ({@code compat_nr_pages}); {@code in_parent = true} reads as {@link PageFlags#PE_PARENT};
     * absent flags read as {@link PageFlags#PE_PRESENT}.
     *
     * @param index       position in the pagemap (0 = first entry after the head)
     * @param fileOffset  byte offset of the entry's length prefix in the pagemap file
     * @param vaddr       address in the task, or offset inside the shared object
     * @param nrPages     page count
     * @param flags       CRIU {@code PE_*} flags
     * @param pagesOffset byte offset of the entry's bytes in the pages file; {@code -1} without PE_PRESENT
     */
    public record Entry(int index, long fileOffset, long vaddr, long nrPages, int flags, long pagesOffset) {

        public boolean present() {
            return PageFlags.has(flags, PageFlags.PE_PRESENT);
        }

        public boolean inParent() {
            return PageFlags.has(flags, PageFlags.PE_PARENT);
        }

        public boolean lazy() {
            return PageFlags.has(flags, PageFlags.PE_LAZY);
        }

        /** Address after the entry's last page (unsigned arithmetic). */
        public long end() {
            return vaddr + nrPages * PageRun.PAGE_SIZE;
        }

        /** Bytes the entry has in the pages file (0 without PE_PRESENT). */
        public long bytes() {
            return present() ? nrPages * PageRun.PAGE_SIZE : 0;
        }

        @Override
        public String toString() {
            return String.format("Entry[#%d 0x%x +%d %s]", index, vaddr, nrPages, PageFlags.describe(flags));
        }
    }

    /** File name of the pages file, {@code pages-<pagesId>.img}. */
    public String pagesFileName() {
        return ImageDirectoryWriter.pagesFileName(pagesId);
    }

    /** Pages with PE_PRESENT (their bytes are in the pages file). */
    public long presentPages() {
        long n = 0;
        for (Entry e : entries) {
            if (e.present()) {
                n += e.nrPages();
            }
        }
        return n;
    }

    /** Pages with PE_PARENT (holes to be found in the parent directory). */
    public long parentPages() {
        long n = 0;
        for (Entry e : entries) {
            if (e.inParent()) {
                n += e.nrPages();
            }
        }
        return n;
    }

    /** The size the pages file must have. */
    public long expectedPagesBytes() {
        return presentPages() * PageRun.PAGE_SIZE;
    }
}
