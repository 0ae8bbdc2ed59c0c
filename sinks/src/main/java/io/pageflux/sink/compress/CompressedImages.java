package io.pageflux.sink.compress;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.ImageDirectoryWriter;
import io.pageflux.sink.criu.ImageFormatException;
import io.pageflux.sink.criu.PagemapImage;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/** Turning a compressed image directory back into a plain CRIU one. */
public final class CompressedImages {

    private static final Pattern COMPRESSED_PAGES = Pattern.compile("pages-\\d+\\.img\\.(zst|lz4|gz)");
    private static final String DAMAGED = "the compressed dump is damaged: re-create it";

    private CompressedImages() {
    }

    /**
     * Writes {@code out} as the plain CRIU directory {@code dir} stands for: every compressed
     * pages file decompressed (every frame verified) into {@code pages-<id>.img}, every other
     * file — pagemaps, inventory, other images — copied byte for byte, the {@code parent} link
     * recreated with the same target. A directory written by {@link CompressedImageSink} thus
     * unpacks to exactly what {@link io.pageflux.sink.criu.CriuImageSink} writes for the same
     * chunks. Plain pages files are copied as they are.
     *
     * <p>Like every image writer here, the output appears atomically: it is written to a
     * temporary sibling and renamed into place only when complete; on any failure nothing is left.
     *
     * @param force replace an existing non-empty {@code out}
     * @throws ImageFormatException if a pages file is missing, damaged, or does not hold what the
     *                              pagemap lists (naming file, offset, frame and field)
     * @throws io.pageflux.sink.criu.ImageWriteException if {@code out} cannot be written
     */
    public static UnpackResult unpack(Path dir, Path out, boolean force) throws IOException {
        try (PageImages in = PageImages.open(dir)) {
            ImageDirectory images = in.directory();
            ImageDirectoryWriter writer = ImageDirectoryWriter.create(out,
                    ImageDirectoryWriter.Options.defaults().withForce(force));
            try {
                Path temp = writer.temporaryDirectory();
                Set<String> done = new HashSet<>();
                long entries = 0;
                long pages = 0;
                long frames = 0;
                long input = 0;
                for (PagemapImage pm : images.pagemaps()) {
                    Path source = in.pagesFile(pm).orElseThrow(() -> new ImageFormatException(
                            dir.resolve(pm.pagesFileName()), -1, "pages", "missing: " + pm.file().getFileName()
                            + " has pages_id=" + pm.pagesId() + " and " + pm.presentPages()
                            + " present pages but there is no pages file for it", DAMAGED));
                    Path target = temp.resolve(pm.pagesFileName());
                    Optional<CompressedPagesReader> compressed = in.compressedReader(pm);
                    if (compressed.isPresent()) {
                        CompressedPagesReader r = compressed.get();
                        if (r.rawBytes() != pm.expectedPagesBytes()) {
                            throw new ImageFormatException(source, -1, "pages", "size mismatch: the file holds "
                                    + r.rawBytes() + " raw bytes but " + pm.file().getFileName() + " lists "
                                    + pm.presentPages() + " present pages = " + pm.expectedPagesBytes() + " bytes",
                                    DAMAGED);
                        }
                        try (FileChannel ch = FileChannel.open(target, StandardOpenOption.CREATE_NEW,
                                StandardOpenOption.WRITE)) {
                            r.transferTo(ch);
                            ch.force(true);
                        }
                        frames += r.frameCount();
                    } else {
                        long size = Files.size(source);
                        if (size != pm.expectedPagesBytes()) {
                            throw new ImageFormatException(source, -1, "pages", "size mismatch: the file has " + size
                                    + " bytes but " + pm.file().getFileName() + " lists " + pm.expectedPagesBytes(),
                                    DAMAGED);
                        }
                        copy(source, target);
                    }
                    input += Files.size(source);
                    done.add(source.getFileName().toString());
                    entries += pm.entries().size();
                    pages += pm.presentPages();
                }
                List<Path> rest;
                try (Stream<Path> s = Files.list(dir)) {
                    rest = s.filter(p -> !done.contains(p.getFileName().toString())).sorted().toList();
                }
                for (Path p : rest) {
                    String name = p.getFileName().toString();
                    Path target = temp.resolve(name);
                    if (Files.isSymbolicLink(p)) {
                        Files.createSymbolicLink(target, Files.readSymbolicLink(p));
                    } else if (COMPRESSED_PAGES.matcher(name).matches()) {
                        throw new ImageFormatException(p, -1, "pages", "no pagemap refers to this pages file",
                                "remove it, or restore the pagemap it belongs to");
                    } else if (Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS)) {
                        copy(p, target);
                        input += Files.size(p);
                    } else {
                        throw new ImageFormatException(p, -1, "directory", "unexpected entry (not a file or link) "
                                + "in an image directory", "move it out of the directory");
                    }
                }
                writer.commit();
                return new UnpackResult(writer.directory(), images.pagemaps().size(), entries, pages, frames, input);
            } catch (IOException | RuntimeException | Error e) {
                writer.abort();
                throw e;
            }
        }
    }

    private static void copy(Path from, Path to) throws IOException {
        Files.copy(from, to, java.nio.file.StandardCopyOption.COPY_ATTRIBUTES);
        try (FileChannel ch = FileChannel.open(to, StandardOpenOption.WRITE)) {
            ch.force(true);
        }
    }
}
