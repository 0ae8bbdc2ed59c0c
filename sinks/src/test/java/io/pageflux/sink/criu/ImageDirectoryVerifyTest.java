package io.pageflux.sink.criu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.criu.proto.PagemapProtos.PagemapEntry;
import io.pageflux.sink.criu.proto.PagemapProtos.PagemapHead;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link ImageDirectory#verify()} and the reader's normalization of legacy fields. */
class ImageDirectoryVerifyTest {

    @TempDir
    Path dir;

    private static byte[] pagemap(long pagesId, PagemapEntry... entries) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(ImageFormat.Kind.PAGEMAP.header().array());
        out.write(ImageFormat.frame(PagemapHead.newBuilder().setPagesId((int) pagesId).build()));
        for (PagemapEntry e : entries) {
            out.write(ImageFormat.frame(e));
        }
        return out.toByteArray();
    }

    private static PagemapEntry entry(long vaddr, long pages, int flags) {
        return PagemapEntry.newBuilder().setVaddr(vaddr).setCompatNrPages((int) pages).setNrPages(pages)
                .setFlags(flags).build();
    }

    @Test
    void legacyFieldsAreNormalized() throws IOException {
        Files.write(dir.resolve("pagemap-5.img"), pagemap(1,
                // CRIU <= 4.1: count only in field 2, no flags -> PE_PRESENT
                PagemapEntry.newBuilder().setVaddr(0x1000).setCompatNrPages(2).build(),
                // in_parent = true, no flags -> PE_PARENT
                PagemapEntry.newBuilder().setVaddr(0x3000).setCompatNrPages(3).setInParent(true).build(),
                // both counts: field 5 wins
                PagemapEntry.newBuilder().setVaddr(0x6000).setCompatNrPages(0).setNrPages(1).setFlags(6).build()));
        Files.write(dir.resolve("pages-1.img"), new byte[3 * 4096]);
        PagemapImage pm = ImageDirectory.open(dir).verify().pagemap(PagemapId.task(5)).orElseThrow();
        assertEquals(List.of(new Vectors.Entry(0x1000, 2, PageFlags.PE_PRESENT),
                new Vectors.Entry(0x3000, 3, PageFlags.PE_PARENT), new Vectors.Entry(0x6000, 1, 6)), Vectors.entries(pm));
        assertEquals(List.of(0L, -1L, 8192L), pm.entries().stream().map(PagemapImage.Entry::pagesOffset).toList());
    }

    @Test
    void pagesFileOfTheWrongSize() throws IOException {
        Path src = Vectors.dir("full-dump");
        Files.copy(src.resolve("pagemap-shmem-32.img"), dir.resolve("pagemap-shmem-32.img"));
        Path pages = Files.write(dir.resolve("pages-1.img"),
                Arrays.copyOf(Files.readAllBytes(src.resolve("pages-1.img")), 7 * 4096));
        ImageFormatException e = assertThrows(ImageFormatException.class, () -> ImageDirectory.open(dir).verify());
        assertEquals(pages, e.file());
        assertTrue(e.getMessage().contains("file=" + pages + " offset=28672 field=pages: size mismatch: the file has "
                + "28672 bytes but pagemap-shmem-32.img lists 8 present pages = 32768 bytes (missing 4096 bytes)"),
                e.getMessage());
    }

    @Test
    void missingPagesFile() throws IOException {
        Files.copy(Vectors.dir("full-dump").resolve("pagemap-shmem-32.img"), dir.resolve("pagemap-shmem-32.img"));
        ImageFormatException e = assertThrows(ImageFormatException.class, () -> ImageDirectory.open(dir).verify());
        assertEquals(dir.resolve("pages-1.img"), e.file());
        assertTrue(e.getMessage().contains("missing: pagemap-shmem-32.img has pages_id=1 and 8 present pages"),
                e.getMessage());
    }

    @Test
    void overlappingEntriesNameTheEntryAndItsOffset() throws IOException {
        Path f = Files.write(dir.resolve("pagemap-5.img"), pagemap(1, entry(0x1000, 4, 4), entry(0x3000, 1, 4)));
        Files.write(dir.resolve("pages-1.img"), new byte[5 * 4096]);
        ImageFormatException e = assertThrows(ImageFormatException.class, () -> ImageDirectory.open(dir).verify());
        assertEquals(f, e.file());
        assertEquals("PagemapEntry[1]", e.field());
        long expectedOffset = 8 + 4 + 2 + 4 + entry(0x1000, 4, 4).getSerializedSize();
        assertEquals(expectedOffset, e.offset());
        assertTrue(e.getMessage().contains("out of order or overlapping: vaddr=0x3000 pages=1 flags=PE_PRESENT starts "
                + "before the end 0x5000 of PagemapEntry[0]"), e.getMessage());
    }

    @Test
    void invalidFlags() throws IOException {
        Files.write(dir.resolve("pagemap-5.img"), pagemap(1, entry(0x1000, 1, PageFlags.PE_PRESENT | PageFlags.PE_PARENT)));
        Files.write(dir.resolve("pages-1.img"), new byte[4096]);
        ImageFormatException e = assertThrows(ImageFormatException.class, () -> ImageDirectory.open(dir).verify());
        assertTrue(e.getMessage().contains("field=PagemapEntry[0]: invalid flags: vaddr=0x1000 pages=1 "
                + "flags=PE_PARENT | PE_PRESENT"), e.getMessage());
    }

    @Test
    void duplicatePagesId() throws IOException {
        Files.write(dir.resolve("pagemap-5.img"), pagemap(1));
        Files.write(dir.resolve("pagemap-6.img"), pagemap(1));
        Files.write(dir.resolve("pages-1.img"), new byte[0]);
        ImageFormatException e = assertThrows(ImageFormatException.class, () -> ImageDirectory.open(dir).verify());
        assertTrue(e.getMessage().contains("field=PagemapHead.pages_id: pages_id=1 is also used by pagemap-"),
                e.getMessage());
    }

    @Test
    void readingBeyondAShortPagesFileIsAFormatError() throws IOException {
        Files.write(dir.resolve("pagemap-5.img"), pagemap(1, entry(0x1000, 2, 4)));
        Path pages = Files.write(dir.resolve("pages-1.img"), new byte[4096]);
        ImageDirectory images = ImageDirectory.open(dir);
        PagemapImage pm = images.pagemaps().get(0);
        ImageFormatException e = assertThrows(ImageFormatException.class,
                () -> images.readPages(pm, pm.entries().get(0)));
        assertEquals(pages, e.file());
        assertTrue(e.getMessage().contains("but the file has 4096"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> images.readPages(pm, pm.entries().get(0), 1, 2));
    }
}
