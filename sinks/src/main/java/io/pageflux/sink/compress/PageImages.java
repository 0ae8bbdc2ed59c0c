package io.pageflux.sink.compress;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.ImageFormatException;
import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.source.PageRun;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;

/**
 * Reads the page bytes of an image directory whether its pages files are plain
 * ({@code pages-<id>.img}) or compressed ({@code pages-<id>.img.zst}, {@code .lz4}, {@code .gz}):
 * what {@code pageflux inspect} uses. Pagemaps, inventory and parent link come from
 * {@link ImageDirectory}, which reads both kinds (the pagemaps are the same).
 *
 * <p>Not thread-safe: compressed readers are opened on first use and kept until {@link #close()}.
 */
public final class PageImages implements AutoCloseable {

    private static final String DAMAGED = "the dump is damaged: re-create it";

    private final ImageDirectory directory;
    private final Map<Long, CompressedPagesReader> readers = new HashMap<>();

    private PageImages(ImageDirectory directory) {
        this.directory = directory;
    }

    /**
     * Opens {@code dir} (reads its pagemaps; no page bytes yet).
     *
     * @throws ImageFormatException if a pagemap or the inventory is malformed
     */
    public static PageImages open(Path dir) throws IOException {
        return new PageImages(ImageDirectory.open(dir));
    }

    /** Pagemaps, entries, inventory, parent link. */
    public ImageDirectory directory() {
        return directory;
    }

    /**
     * The file holding {@code pm}'s page bytes: the plain {@code pages-<id>.img} if it exists,
     * else the compressed one; empty if there is neither.
     *
     * @throws ImageFormatException if both a plain and a compressed file, or several compressed ones, exist
     */
    public Optional<Path> pagesFile(PagemapImage pm) {
        Path plain = directory.path().resolve(pm.pagesFileName());
        Path found = Files.exists(plain) ? plain : null;
        for (Codec.Algorithm a : Codec.Algorithm.values()) {
            if (a == Codec.Algorithm.NONE) {
                continue;
            }
            Path c = directory.path().resolve(CompressedPagesFormat.pagesFileName(pm.pagesId(), a));
            if (Files.exists(c)) {
                if (found != null) {
                    throw new ImageFormatException(c, -1, "pages", "ambiguous: both " + found.getFileName() + " and "
                            + c.getFileName() + " exist for pages_id=" + pm.pagesId(),
                            "keep only one of them (unpack writes a new directory and leaves the source alone)");
                }
                found = c;
            }
        }
        return Optional.ofNullable(found);
    }

    /** Whether {@code pm}'s pages are in a compressed file. */
    public boolean isCompressed(PagemapImage pm) {
        return pagesFile(pm).map(p -> !p.getFileName().toString().endsWith(".img")).orElse(false);
    }

    /**
     * {@code count} pages of a PE_PRESENT entry from page {@code fromPage} of it, in a new heap
     * buffer (position 0, limit = bytes). From a compressed file only the frames holding those
     * pages are decompressed (and verified).
     *
     * @throws IllegalArgumentException if the entry has no bytes or the range is outside it
     * @throws ImageFormatException     if the pages file is missing, too short, or damaged
     */
    public ByteBuffer readPages(PagemapImage pm, PagemapImage.Entry entry, long fromPage, int count)
            throws IOException {
        Path file = pagesFile(pm).orElseThrow(() -> new ImageFormatException(
                directory.path().resolve(pm.pagesFileName()), -1, "pages", "missing: " + pm.file().getFileName()
                + " has pages_id=" + pm.pagesId() + " but neither " + pm.pagesFileName() + " nor a compressed "
                + "variant exists", DAMAGED));
        if (file.getFileName().toString().endsWith(".img")) {
            return directory.readPages(pm, entry, fromPage, count);
        }
        if (!entry.present()) {
            throw new IllegalArgumentException(pm.file().getFileName() + " " + entry + " has no bytes (no PE_PRESENT)");
        }
        if (fromPage < 0 || count < 0 || fromPage + count > entry.nrPages()
                || (long) count * PageRun.PAGE_SIZE > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("pages " + fromPage + "+" + count + " outside " + entry);
        }
        CompressedPagesReader r = reader(pm, file);
        long offset = entry.pagesOffset() + fromPage * PageRun.PAGE_SIZE;
        if (offset + (long) count * PageRun.PAGE_SIZE > r.rawBytes()) {
            throw new ImageFormatException(file, -1, "pages", "truncated: " + pm.file().getFileName() + " " + entry
                    + " needs raw bytes up to " + (entry.pagesOffset() + entry.bytes()) + " but the file holds "
                    + r.rawBytes(), DAMAGED);
        }
        ByteBuffer dst = ByteBuffer.allocate(count * PageRun.PAGE_SIZE);
        r.read(offset, dst);
        return dst.flip();
    }

    /** All bytes of a PE_PRESENT entry (at most 2 GiB). */
    public ByteBuffer readPages(PagemapImage pm, PagemapImage.Entry entry) throws IOException {
        if (entry.nrPages() * PageRun.PAGE_SIZE > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(entry + " is too large to read at once: read it in parts");
        }
        return readPages(pm, entry, 0, (int) entry.nrPages());
    }

    /**
     * Checks the page data against the pagemaps: a directory without compressed pages files gets
     * {@link ImageDirectory#verify()} (entries and sizes); for compressed files, each must exist
     * once, pass its header/footer/index checks, hold exactly the bytes its pagemap lists, and
     * every frame must decompress and match its checksums (this reads everything).
     *
     * @return the number of frames verified (0 for a plain directory)
     * @throws ImageFormatException for the first fault, naming file, offset, frame and field
     */
    public long verify() throws IOException {
        boolean anyCompressed = false;
        for (PagemapImage pm : directory.pagemaps()) {
            anyCompressed |= isCompressed(pm);
        }
        if (!anyCompressed) {
            directory.verify();
            return 0;
        }
        long frames = 0;
        for (PagemapImage pm : directory.pagemaps()) {
            Path file = pagesFile(pm).orElseThrow(() -> new ImageFormatException(
                    directory.path().resolve(pm.pagesFileName()), -1, "pages", "missing: " + pm.file().getFileName()
                    + " has pages_id=" + pm.pagesId() + " but there is no pages file for it", DAMAGED));
            Optional<CompressedPagesReader> r = compressedReader(pm);
            long size = r.isPresent() ? r.get().rawBytes() : Files.size(file);
            if (size != pm.expectedPagesBytes()) {
                throw new ImageFormatException(file, -1, "pages", "size mismatch: the file holds " + size
                        + " bytes of pages but " + pm.file().getFileName() + " lists " + pm.presentPages()
                        + " present pages = " + pm.expectedPagesBytes() + " bytes", DAMAGED);
            }
            if (r.isPresent()) {
                r.get().transferTo(new DiscardChannel());
                frames += r.get().frameCount();
            }
        }
        return frames;
    }

    /** Accepts and drops bytes. */
    private static final class DiscardChannel implements java.nio.channels.WritableByteChannel {
        @Override
        public int write(ByteBuffer src) {
            int n = src.remaining();
            src.position(src.limit());
            return n;
        }

        @Override
        public boolean isOpen() {
            return true;
        }

        @Override
        public void close() {
        }
    }

    /**
     * The compressed reader of {@code pm}'s pages file, if it is compressed (opened and cached;
     * closed with this object).
     */
    public Optional<CompressedPagesReader> compressedReader(PagemapImage pm) throws IOException {
        Optional<Path> file = pagesFile(pm);
        if (file.isEmpty() || file.get().getFileName().toString().endsWith(".img")) {
            return Optional.empty();
        }
        return Optional.of(reader(pm, file.get()));
    }

    private CompressedPagesReader reader(PagemapImage pm, Path file) throws IOException {
        CompressedPagesReader r = readers.get(pm.pagesId());
        if (r == null) {
            r = CompressedPagesReader.open(file);
            readers.put(pm.pagesId(), r);
        }
        return r;
    }

    @Override
    public void close() throws IOException {
        IOException first = null;
        for (CompressedPagesReader r : readers.values()) {
            try {
                r.close();
            } catch (IOException e) {
                if (first == null) {
                    first = e;
                }
            }
        }
        readers.clear();
        if (first != null) {
            throw first;
        }
    }
}
