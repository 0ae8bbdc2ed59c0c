package io.pageflux.sink.pageserver;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * The pages of one task as a completed image directory holds them, PE_PARENT holes resolved
 * through its {@code parent} chain: what a GET answers. Directories are opened once, on first use;
 * page bytes are read per request.
 */
final class LazyPages {

    /** A chain deeper than this is taken for a loop of parent links. */
    private static final int MAX_DEPTH = 256;

    private final PagemapId task;
    private final Optional<Path> newest;
    private final int pageSize;
    /** Levels opened so far: 0 = newest, 1 = its parent, ... */
    private final List<ImageDirectory> levels = new ArrayList<>();
    private final Set<Path> seen = new HashSet<>();

    LazyPages(PagemapId task, Optional<Path> newest, int pageSize) {
        this.task = task;
        this.newest = newest;
        this.pageSize = pageSize;
    }

    String describe() {
        return newest.map(Path::toString).orElse("(none)");
    }

    /**
     * Reads up to {@code maxPages} pages from {@code vaddr} on, stopping where the run that holds
     * {@code vaddr} ends (in the directory that has the bytes).
     *
     * @param headroom bytes left free at the start of the returned buffer (for the answer's header)
     * @return a buffer of {@code headroom + k * pageSize} bytes, k = 0 when the images do not hold
     *         the page at {@code vaddr} (not dumped, or only PE_LAZY)
     * @throws IOException or {@link io.pageflux.sink.criu.ImageFormatException} for damaged images
     */
    ByteBuffer read(long vaddr, long maxPages, int headroom) throws IOException {
        long want = maxPages;
        for (int depth = 0; newest.isPresent(); depth++) {
            ImageDirectory dir = level(depth);
            if (dir == null) {
                break; // a hole whose parent is missing: the pages are not here
            }
            Optional<PagemapImage> pm = dir.pagemap(task);
            if (pm.isEmpty()) {
                break;
            }
            PagemapImage.Entry e = covering(pm.get(), vaddr);
            if (e == null) {
                break;
            }
            long left = Long.divideUnsigned(e.end() - vaddr, pageSize);
            want = Math.min(want, left);
            if (e.present()) {
                long from = (vaddr - e.vaddr()) / pageSize;
                ByteBuffer pages = dir.readPages(pm.get(), e, from, (int) want);
                ByteBuffer out = ByteBuffer.allocate(headroom + pages.remaining());
                out.position(headroom);
                out.put(pages);
                return out.flip();
            }
            if (!e.inParent()) {
                break; // PE_LAZY only: the bytes were never sent here
            }
        }
        return ByteBuffer.allocate(headroom);
    }

    private ImageDirectory level(int depth) throws IOException {
        while (levels.size() <= depth) {
            if (levels.size() >= MAX_DEPTH) {
                throw new IOException("parent chain of dir=" + newest.get() + " is deeper than " + MAX_DEPTH
                        + " levels: a loop of parent links?");
            }
            Optional<Path> next = levels.isEmpty() ? newest : levels.get(levels.size() - 1).parent();
            if (next.isEmpty() || !java.nio.file.Files.isDirectory(next.get())) {
                return null;
            }
            Path real = next.get().toRealPath();
            if (!seen.add(real)) {
                throw new IOException("parent chain of dir=" + newest.get() + " loops back to " + real);
            }
            levels.add(ImageDirectory.open(next.get()));
        }
        return levels.get(depth);
    }

    /** The entry whose pages include {@code vaddr} (entries are ascending and disjoint), or null. */
    private static PagemapImage.Entry covering(PagemapImage pm, long vaddr) {
        List<PagemapImage.Entry> entries = pm.entries();
        int lo = 0;
        int hi = entries.size() - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            PagemapImage.Entry e = entries.get(mid);
            if (Long.compareUnsigned(vaddr, e.vaddr()) < 0) {
                hi = mid - 1;
            } else if (Long.compareUnsigned(vaddr, e.end()) >= 0) {
                lo = mid + 1;
            } else {
                return e;
            }
        }
        return null;
    }
}
