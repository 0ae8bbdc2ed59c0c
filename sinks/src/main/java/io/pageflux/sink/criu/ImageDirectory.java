package io.pageflux.sink.criu;

import io.pageflux.sink.criu.proto.InventoryProtos.InventoryEntry;
import io.pageflux.sink.criu.proto.PagemapProtos.PagemapEntry;
import io.pageflux.sink.criu.proto.PagemapProtos.PagemapHead;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * A CRIU image directory read from disk — CRIU's own or pageflux's: its pagemaps (task and
 * shared-anonymous), their entries, the inventory and the {@code parent} link. For
 * {@code pageflux inspect}, verification and tests.
 *
 * <p>{@link #open} reads every pagemap's entries into memory (about 60 bytes per entry) but no
 * page bytes; {@link #readPages} reads those on request. Immutable and thread-safe.
 */
public final class ImageDirectory {

    private static final Pattern TASK_PAGEMAP = Pattern.compile("pagemap-(\\d+)\\.img");
    private static final Pattern SHMEM_PAGEMAP = Pattern.compile("pagemap-shmem-(\\d+)\\.img");
    private static final String DAMAGED = "the dump is damaged: re-create it";

    private final Path dir;
    private final List<PagemapImage> pagemaps;
    private final Optional<InventoryImage> inventory;
    private final Optional<Path> parentLink;

    private ImageDirectory(Path dir, List<PagemapImage> pagemaps, Optional<InventoryImage> inventory,
                           Optional<Path> parentLink) {
        this.dir = dir;
        this.pagemaps = List.copyOf(pagemaps);
        this.inventory = inventory;
        this.parentLink = parentLink;
    }

    /**
     * Reads the pagemaps ({@code pagemap-<pid>.img}, {@code pagemap-shmem-<shmid>.img}), the
     * inventory if present and the {@code parent} link. Other files are ignored.
     *
     * @throws ImageFormatException if a pagemap or the inventory is malformed (naming file and offset)
     * @throws NotDirectoryException if {@code dir} is not a directory
     * @throws IOException if reading fails
     */
    public static ImageDirectory open(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) {
            if (!Files.exists(dir)) {
                throw new NoSuchFileException(dir.toString(), null, "no such image directory");
            }
            throw new NotDirectoryException(dir.toString());
        }
        List<PagemapImage> pagemaps = new ArrayList<>();
        List<Path> files;
        try (Stream<Path> s = Files.list(dir)) {
            files = s.sorted().toList();
        }
        for (Path f : files) {
            String name = f.getFileName().toString();
            Matcher task = TASK_PAGEMAP.matcher(name);
            Matcher shmem = SHMEM_PAGEMAP.matcher(name);
            if (task.matches()) {
                pagemaps.add(readPagemap(f, PagemapId.task(Long.parseLong(task.group(1)))));
            } else if (shmem.matches()) {
                pagemaps.add(readPagemap(f, PagemapId.shmem(Long.parseLong(shmem.group(1)))));
            }
        }
        pagemaps.sort(Comparator.comparingLong(PagemapImage::pagesId));
        Path inv = dir.resolve(ImageFormat.INVENTORY_FILE);
        Optional<InventoryImage> inventory = Files.exists(inv) ? Optional.of(readInventory(inv)) : Optional.empty();
        Path link = dir.resolve(ImageFormat.PARENT_LINK);
        Optional<Path> parentLink = Files.isSymbolicLink(link)
                ? Optional.of(Files.readSymbolicLink(link)) : Optional.empty();
        return new ImageDirectory(dir, pagemaps, inventory, parentLink);
    }

    /**
     * Reads one pagemap image.
     *
     * @throws ImageFormatException if it is malformed or has no {@code PagemapHead}
     */
    public static PagemapImage readPagemap(Path file, PagemapId id) throws IOException {
        try (ImageFileReader r = ImageFileReader.open(file, ImageFormat.Kind.PAGEMAP)) {
            PagemapHead head = r.next(PagemapHead.parser(), "PagemapHead");
            if (head == null) {
                throw new ImageFormatException(file, r.offset(), "PagemapHead",
                        "missing: the pagemap ends after its magic", DAMAGED);
            }
            List<PagemapImage.Entry> entries = new ArrayList<>();
            long pagesOffset = 0;
            PagemapEntry e;
            while ((e = r.next(PagemapEntry.parser(), "PagemapEntry")) != null) {
                long nr = e.hasNrPages() ? e.getNrPages() : Integer.toUnsignedLong(e.getCompatNrPages());
                int flags;
                if (e.hasFlags()) {
                    flags = e.getFlags();
                } else {
                    flags = e.hasInParent() && e.getInParent() ? PageFlags.PE_PARENT : PageFlags.PE_PRESENT;
                }
                boolean present = PageFlags.has(flags, PageFlags.PE_PRESENT);
                entries.add(new PagemapImage.Entry(entries.size(), r.lastFrameOffset(), e.getVaddr(), nr, flags,
                        present ? pagesOffset : -1));
                if (present) {
                    pagesOffset += nr * PageRun.PAGE_SIZE;
                }
            }
            return new PagemapImage(id, file, Integer.toUnsignedLong(head.getPagesId()), entries);
        }
    }

    /**
     * Reads an {@code inventory.img}.
     *
     * @throws ImageFormatException if it is malformed or empty
     */
    public static InventoryImage readInventory(Path file) throws IOException {
        try (ImageFileReader r = ImageFileReader.open(file, ImageFormat.Kind.INVENTORY)) {
            InventoryEntry e = r.next(InventoryEntry.parser(), "InventoryEntry");
            if (e == null) {
                throw new ImageFormatException(file, r.offset(), "InventoryEntry",
                        "missing: the inventory ends after its magic", DAMAGED);
            }
            return InventoryImage.of(file, e);
        }
    }

    public Path path() {
        return dir;
    }

    /** All pagemaps, in pages_id order. */
    public List<PagemapImage> pagemaps() {
        return pagemaps;
    }

    public Optional<PagemapImage> pagemap(PagemapId id) {
        return pagemaps.stream().filter(p -> p.id().equals(id)).findFirst();
    }

    public Optional<InventoryImage> inventory() {
        return inventory;
    }

    /** The {@code parent} symlink's target as stored (CRIU writes it relative, e.g. {@code ../pd1}). */
    public Optional<Path> parentLink() {
        return parentLink;
    }

    /** The parent directory the link points to, resolved against this directory and normalized. */
    public Optional<Path> parent() {
        return parentLink.map(t -> dir.resolve(t).normalize());
    }

    /** Opens the parent directory of an incremental chain, if there is a {@code parent} link. */
    public Optional<ImageDirectory> openParent() throws IOException {
        Optional<Path> p = parent();
        return p.isPresent() ? Optional.of(open(p.get())) : Optional.empty();
    }

    /** Pages with PE_PRESENT over all pagemaps. */
    public long presentPages() {
        return pagemaps.stream().mapToLong(PagemapImage::presentPages).sum();
    }

    /** Pages with PE_PARENT over all pagemaps. */
    public long parentPages() {
        return pagemaps.stream().mapToLong(PagemapImage::parentPages).sum();
    }

    /** Entries over all pagemaps. */
    public long entries() {
        return pagemaps.stream().mapToLong(p -> p.entries().size()).sum();
    }

    /** Bytes the pages files must hold together. */
    public long pagesBytes() {
        return presentPages() * PageRun.PAGE_SIZE;
    }

    /**
     * Checks what a restorer relies on: pages_ids are unique; in each pagemap, entries have at
     * least one page, page-aligned addresses, valid flags, ascending non-overlapping addresses;
     * each pages file exists and holds exactly {@code 4096 * present pages} bytes.
     *
     * @return this directory, for chaining
     * @throws ImageFormatException for the first fault found, naming the file and entry
     */
    public ImageDirectory verify() throws IOException {
        Map<Long, PagemapImage> byPagesId = new HashMap<>();
        for (PagemapImage pm : pagemaps) {
            PagemapImage other = byPagesId.putIfAbsent(pm.pagesId(), pm);
            if (other != null) {
                throw new ImageFormatException(pm.file(), ImageFormat.PAGEMAP_HEADER_BYTES, "PagemapHead.pages_id",
                        "pages_id=" + pm.pagesId() + " is also used by " + other.file().getFileName(), DAMAGED);
            }
            verifyEntries(pm);
            Path pages = dir.resolve(pm.pagesFileName());
            if (!Files.exists(pages)) {
                throw new ImageFormatException(pages, -1, "pages", "missing: " + pm.file().getFileName()
                        + " has pages_id=" + pm.pagesId() + " and " + pm.presentPages() + " present pages", DAMAGED);
            }
            long size = Files.size(pages);
            long expected = pm.expectedPagesBytes();
            if (size != expected) {
                throw new ImageFormatException(pages, Math.min(size, expected), "pages", "size mismatch: the file has "
                        + size + " bytes but " + pm.file().getFileName() + " lists " + pm.presentPages()
                        + " present pages = " + expected + " bytes (" + (size > expected ? "extra " + (size - expected)
                        : "missing " + (expected - size)) + " bytes)", DAMAGED);
            }
        }
        return this;
    }

    private static void verifyEntries(PagemapImage pm) {
        PagemapImage.Entry prev = null;
        for (PagemapImage.Entry e : pm.entries()) {
            String field = "PagemapEntry[" + e.index() + "]";
            String what = String.format("vaddr=0x%x pages=%d flags=%s", e.vaddr(), e.nrPages(),
                    PageFlags.describe(e.flags()));
            if (e.nrPages() <= 0) {
                throw new ImageFormatException(pm.file(), e.fileOffset(), field, "no pages: " + what, DAMAGED);
            }
            if (e.vaddr() % PageRun.PAGE_SIZE != 0) {
                throw new ImageFormatException(pm.file(), e.fileOffset(), field, "vaddr not page aligned: " + what,
                        DAMAGED);
            }
            int f = e.flags();
            if ((f & ~(PageFlags.PE_PARENT | PageFlags.PE_LAZY | PageFlags.PE_PRESENT)) != 0
                    || (e.present() && e.inParent())) {
                throw new ImageFormatException(pm.file(), e.fileOffset(), field, "invalid flags: " + what, DAMAGED);
            }
            long lastByte = e.vaddr() + e.nrPages() * PageRun.PAGE_SIZE - 1;
            if (Long.compareUnsigned(lastByte, e.vaddr()) < 0) {
                throw new ImageFormatException(pm.file(), e.fileOffset(), field,
                        "runs past the end of the address space: " + what, DAMAGED);
            }
            if (prev != null && Long.compareUnsigned(e.vaddr(), prev.end()) < 0) {
                throw new ImageFormatException(pm.file(), e.fileOffset(), field, String.format(
                        "out of order or overlapping: %s starts before the end 0x%x of PagemapEntry[%d]", what,
                        prev.end(), prev.index()), DAMAGED);
            }
            prev = e;
        }
    }

    /**
     * Reads {@code count} pages of a PE_PRESENT entry, starting at page {@code fromPage} of it,
     * into a new heap buffer (position 0, limit = bytes).
     *
     * @throws IllegalArgumentException if the entry has no bytes or the range is outside it
     * @throws ImageFormatException     if the pages file ends early
     */
    public ByteBuffer readPages(PagemapImage pm, PagemapImage.Entry entry, long fromPage, int count)
            throws IOException {
        if (!entry.present()) {
            throw new IllegalArgumentException(pm.file().getFileName() + " " + entry + " has no bytes (no PE_PRESENT)");
        }
        if (fromPage < 0 || count < 0 || fromPage + count > entry.nrPages()
                || (long) count * PageRun.PAGE_SIZE > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("pages " + fromPage + "+" + count + " outside " + entry);
        }
        Path pages = dir.resolve(pm.pagesFileName());
        ByteBuffer dst = ByteBuffer.allocate(count * PageRun.PAGE_SIZE);
        long position = entry.pagesOffset() + fromPage * PageRun.PAGE_SIZE;
        try (FileChannel ch = FileChannel.open(pages, StandardOpenOption.READ)) {
            while (dst.hasRemaining()) {
                int n = ch.read(dst, position);
                if (n < 0) {
                    throw new ImageFormatException(pages, position, "pages", "truncated: " + pm.file().getFileName()
                            + " " + entry + " needs bytes up to offset " + (entry.pagesOffset() + entry.bytes())
                            + " but the file has " + ch.size(), DAMAGED);
                }
                position += n;
            }
        }
        return dst.flip();
    }

    /** All bytes of a PE_PRESENT entry (at most 2 GiB). */
    public ByteBuffer readPages(PagemapImage pm, PagemapImage.Entry entry) throws IOException {
        if (entry.nrPages() * PageRun.PAGE_SIZE > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(entry + " is too large to read at once: read it in parts");
        }
        return readPages(pm, entry, 0, (int) entry.nrPages());
    }

    @Override
    public String toString() {
        return "ImageDirectory[" + dir + " pagemaps=" + pagemaps.size() + " entries=" + entries() + " present="
                + presentPages() + " parent=" + parentPages() + "]";
    }
}
