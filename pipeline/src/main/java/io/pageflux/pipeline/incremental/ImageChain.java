package io.pageflux.pipeline.incremental;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * An image directory and its {@code parent} chain, newest first, able to produce the bytes of any page
 * the newest pagemap lists: a PE_PRESENT page from its own pages file, a PE_PARENT page from the first
 * ancestor whose pagemap has it present — the way a restorer resolves holes.
 *
 * <p>Holds one open pages file per pagemap it has read from; close it when done. Not thread-safe.
 */
public final class ImageChain implements AutoCloseable {

    /** Chains longer than this are refused (a loop of links, or something is wrong). */
    public static final int MAX_DEPTH = 4096;

    private static final int PAGE = PageRun.PAGE_SIZE;

    private final List<ImageDirectory> levels;
    private final Map<String, FileChannel> channels = new HashMap<>();
    /** level → pagemap id → its image (or null when the level has none): looked up once, not per page. */
    private final List<Map<PagemapId, Optional<PagemapImage>>> pagemaps = new ArrayList<>();
    private final ByteBuffer page = ByteBuffer.allocate(PAGE);

    private ImageChain(List<ImageDirectory> levels) {
        this.levels = levels;
        for (int i = 0; i < levels.size(); i++) {
            pagemaps.add(new HashMap<>());
        }
    }

    private Optional<PagemapImage> pagemap(int level, PagemapId id) {
        return pagemaps.get(level).computeIfAbsent(id, k -> levels.get(level).pagemap(k));
    }

    /**
     * Opens {@code dir} and every parent its {@code parent} links lead to.
     *
     * @throws ParentDumpException a link to a missing directory, a loop, or an unreadable level
     */
    public static ImageChain open(Path dir) {
        List<ImageDirectory> levels = new ArrayList<>();
        Set<Path> seen = new HashSet<>();
        Path current = dir.toAbsolutePath().normalize();
        Path child = null;
        while (current != null) {
            if (!seen.add(current) || levels.size() >= MAX_DEPTH) {
                throw new ParentDumpException(current, "the parent chain of dir=" + dir + " loops back to " + current
                        + " (or is deeper than " + MAX_DEPTH + "): fix the parent links");
            }
            if (!Files.isDirectory(current)) {
                throw new ParentDumpException(current, child == null
                        ? "dir=" + current + " is not a directory"
                        : "the parent link of dir=" + child + " points to " + current
                        + ", which does not exist: the chain is broken, holes cannot be resolved");
            }
            ImageDirectory images;
            try {
                images = ImageDirectory.open(current).verify();
            } catch (IOException | RuntimeException e) {
                throw new ParentDumpException(current, "dir=" + current + " of the chain of " + dir
                        + " is not a readable dump: " + e.getMessage(), e);
            }
            levels.add(images);
            child = current;
            current = images.parent().map(p -> p.toAbsolutePath().normalize()).orElse(null);
        }
        return new ImageChain(List.copyOf(levels));
    }

    /** The directories, newest first. */
    public List<ImageDirectory> levels() {
        return levels;
    }

    public ImageDirectory newest() {
        return levels.get(0);
    }

    public int depth() {
        return levels.size();
    }

    /**
     * The bytes of the page at {@code vaddr} of {@code pagemap} as the chain holds them, in a buffer
     * reused by the next call (read it before calling again).
     *
     * @return the page and the level (0 = newest) it came from, or empty if the newest pagemap does not
     *         list the page at all
     * @throws ParentDumpException if the page is a hole no ancestor resolves
     */
    public Optional<Resolved> page(PagemapId pagemap, long vaddr) {
        for (int level = 0; level < levels.size(); level++) {
            ImageDirectory dir = levels.get(level);
            Optional<PagemapImage> pm = pagemap(level, pagemap);
            PagemapImage.Entry e = pm.isEmpty() ? null : find(pm.get(), vaddr);
            if (e == null) {
                if (level == 0) {
                    return Optional.empty();
                }
                throw new ParentDumpException(dir.path(), String.format("unresolved hole: pagemap=%s vaddr=0x%x is"
                        + " PE_PARENT in %s but %s does not list it", pagemap, vaddr, levels.get(level - 1).path(),
                        dir.path()));
            }
            if (e.present()) {
                read(dir, pm.get(), e, (vaddr - e.vaddr()) / PAGE);
                return Optional.of(new Resolved(page.asReadOnlyBuffer(), level));
            }
            if (!e.inParent()) {
                throw new ParentDumpException(dir.path(), String.format("pagemap=%s vaddr=0x%x in %s has neither"
                        + " PE_PRESENT nor PE_PARENT (flags=%d)", pagemap, vaddr, dir.path(), e.flags()));
            }
        }
        throw new ParentDumpException(levels.get(levels.size() - 1).path(), String.format("unresolved hole:"
                + " pagemap=%s vaddr=0x%x is PE_PARENT down to %s, which has no parent", pagemap, vaddr,
                levels.get(levels.size() - 1).path()));
    }

    /** Whether the newest pagemap lists the page (present or hole). */
    public boolean lists(PagemapId pagemap, long vaddr) {
        Optional<PagemapImage> pm = pagemap(0, pagemap);
        return pm.isPresent() && find(pm.get(), vaddr) != null;
    }

    /**
     * A page's bytes and where they came from.
     *
     * @param bytes 4096 bytes, valid until the next {@link #page} call
     * @param level 0 for the newest directory, 1 for its parent, ...
     */
    public record Resolved(ByteBuffer bytes, int level) {
    }

    private static PagemapImage.Entry find(PagemapImage pm, long vaddr) {
        List<PagemapImage.Entry> entries = pm.entries();
        int lo = 0;
        int hi = entries.size() - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (Long.compareUnsigned(entries.get(mid).vaddr(), vaddr) <= 0) {
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        if (hi < 0) {
            return null;
        }
        PagemapImage.Entry e = entries.get(hi);
        return Long.compareUnsigned(vaddr, e.end()) < 0 ? e : null;
    }

    private void read(ImageDirectory dir, PagemapImage pm, PagemapImage.Entry e, long pageInEntry) {
        Path file = dir.path().resolve(pm.pagesFileName());
        FileChannel ch = channels.computeIfAbsent(file.toString(), f -> {
            try {
                return FileChannel.open(file, StandardOpenOption.READ);
            } catch (IOException ex) {
                throw new UncheckedIOException("cannot open " + file + ": " + ex.getMessage(), ex);
            }
        });
        page.clear();
        long position = e.pagesOffset() + pageInEntry * PAGE;
        try {
            while (page.hasRemaining()) {
                int n = ch.read(page, position + page.position());
                if (n < 0) {
                    throw new ParentDumpException(dir.path(), "pages file " + file + " ends at offset "
                            + (position + page.position()) + ", inside " + e + " of " + pm.file().getFileName());
                }
            }
        } catch (IOException ex) {
            throw new UncheckedIOException("cannot read " + file + " at offset " + position + ": " + ex.getMessage(), ex);
        }
        page.flip();
    }

    @Override
    public void close() {
        for (FileChannel ch : channels.values()) {
            try {
                ch.close();
            } catch (IOException ignored) {
                // read-only
            }
        }
        channels.clear();
    }
}
