package io.pageflux.sink.criu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Malformed images fail with {@link ImageFormatException} naming file, offset and field. */
class ImageFileReaderTest {

    @TempDir
    Path tmp;
    byte[] pagemap;

    @BeforeEach
    void load() throws IOException {
        // 26 bytes: magics (8), head: len 2 @8 + 2 bytes, entry: len 8 @14 + 8 bytes
        pagemap = Files.readAllBytes(Vectors.dir("full-dump").resolve("pagemap-shmem-32.img"));
        assertEquals(26, pagemap.length);
    }

    private Path write(String name, byte[] bytes) throws IOException {
        return Files.write(tmp.resolve(name), bytes);
    }

    private ImageFormatException readFails(Path file) {
        return assertThrows(ImageFormatException.class, () -> ImageDirectory.readPagemap(file, PagemapId.shmem(32)));
    }

    @Test
    void wrongCommonMagic() throws IOException {
        byte[] b = pagemap.clone();
        b[0] = 0x18;
        Path f = write("pagemap-shmem-32.img", b);
        ImageFormatException e = readFails(f);
        assertEquals(f, e.file());
        assertEquals(0, e.offset());
        assertEquals("magic", e.field());
        assertTrue(e.getMessage().contains("file=" + f + " offset=0 field=magic: wrong magic 0x54564318 expected "
                + "0x54564319 (IMG_COMMON_MAGIC)"), e.getMessage());
        assertTrue(e.getMessage().contains("re-create the dump"), e.getMessage());
    }

    @Test
    void wrongPagemapMagicIsReportedAtOffset4() throws IOException {
        byte[] b = pagemap.clone();
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putInt(4, 0x58313116);
        ImageFormatException e = readFails(write("p.img", b));
        assertEquals(4, e.offset());
        assertTrue(e.getMessage().contains("wrong magic 0x58313116 expected 0x56084025 (PAGEMAP)"), e.getMessage());
    }

    @Test
    void inventoryWithCommonMagicIsRejected() throws IOException {
        byte[] inv = Files.readAllBytes(Vectors.dir("pre-dump-1").resolve("inventory.img"));
        byte[] b = new byte[inv.length + 4];
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putInt(ImageFormat.IMG_COMMON_MAGIC).put(inv);
        Path f = write("inventory.img", b);
        ImageFormatException e = assertThrows(ImageFormatException.class, () -> ImageDirectory.readInventory(f));
        assertEquals(0, e.offset());
        assertTrue(e.getMessage().contains("wrong magic 0x54564319 expected 0x58313116 (INVENTORY) (inventory.img "
                + "starts with its own magic, without IMG_COMMON_MAGIC)"), e.getMessage());
    }

    @Test
    void shorterThanTheMagics() throws IOException {
        ImageFormatException e = readFails(write("p.img", Arrays.copyOf(pagemap, 5)));
        assertEquals(0, e.offset());
        assertTrue(e.getMessage().contains("truncated: a PAGEMAP image starts with 8 bytes of magic but the file has "
                + "only 5 bytes"), e.getMessage());
    }

    @Test
    void truncatedMessage() throws IOException {
        Path f = write("p.img", Arrays.copyOf(pagemap, 20));
        ImageFormatException e = readFails(f);
        assertEquals(14, e.offset());
        assertEquals("PagemapEntry[0]", e.field());
        assertTrue(e.getMessage().contains("file=" + f + " offset=14 field=PagemapEntry[0]: truncated: message at "
                + "offset 14 claims 8 bytes but only 2 remain"), e.getMessage());
    }

    @Test
    void truncatedLengthPrefix() throws IOException {
        ImageFormatException e = readFails(write("p.img", Arrays.copyOf(pagemap, 16)));
        assertEquals(14, e.offset());
        assertTrue(e.getMessage().contains("field=PagemapEntry[0].length: truncated: a length prefix needs 4 bytes "
                + "but only 2 remain"), e.getMessage());
    }

    @Test
    void garbageMessage() throws IOException {
        byte[] b = pagemap.clone();
        Arrays.fill(b, 18, 26, (byte) 0xff); // the entry's body: an endless varint
        Path f = write("p.img", b);
        ImageFormatException e = readFails(f);
        assertEquals(14, e.offset());
        assertTrue(e.getMessage().contains("offset=14 field=PagemapEntry[0]: not a valid PagemapEntry message (8 "
                + "bytes)"), e.getMessage());
    }

    @Test
    void messageMissingRequiredFields() throws IOException {
        byte[] b = Arrays.copyOf(pagemap, 14 + 4 + 2);
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putInt(14, 2).put(18, (byte) 0x20).put(19, (byte) 4);
        // an entry holding only flags = 4: vaddr and compat_nr_pages are required
        ImageFormatException e = readFails(write("p.img", b));
        assertEquals(14, e.offset());
        assertTrue(e.getMessage().contains("vaddr"), e.getMessage());
    }

    @Test
    void missingHead() throws IOException {
        ImageFormatException e = readFails(write("p.img", Arrays.copyOf(pagemap, 8)));
        assertEquals(8, e.offset());
        assertTrue(e.getMessage().contains("field=PagemapHead: missing"), e.getMessage());
    }

    @Test
    void openingADirectoryWithABadPagemapNamesIt() throws IOException {
        Path dir = Files.createDirectory(tmp.resolve("d"));
        Path f = Files.write(dir.resolve("pagemap-7.img"), Arrays.copyOf(pagemap, 20));
        ImageFormatException e = assertThrows(ImageFormatException.class, () -> ImageDirectory.open(dir));
        assertEquals(f, e.file());
    }
}
