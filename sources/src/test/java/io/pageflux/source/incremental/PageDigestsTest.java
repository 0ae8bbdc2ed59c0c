package io.pageflux.source.incremental;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.PagemapId;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PageDigestsTest {

    private static final PagemapId TASK = PagemapId.task(4242);
    private static final PagemapId SHMEM = PagemapId.shmem(77);
    private static final long BASE = 0x7f00_0000_0000L;

    /** 1000 consecutive pages, a gap, 10 more; plus 3 shmem pages given out of order. */
    private static PageDigests sample() {
        PageDigests.Builder b = PageDigests.builder();
        for (int p = 0; p < 1000; p++) {
            b.add(TASK, BASE + p * 4096L, p * 31L + 7);
        }
        for (int p = 0; p < 10; p++) {
            b.add(TASK, BASE + (2000 + p) * 4096L, -p);
        }
        b.add(SHMEM, 8192, 3).add(SHMEM, 0, 1).add(SHMEM, 4096, 2).add(SHMEM, 0, 11); // the last digest of page 0 wins
        return b.build(4242, 123_456_789L);
    }

    @Test
    void storesRunsAndOneLongPerPage() {
        PageDigests d = sample();
        assertEquals(1013, d.pages());
        assertEquals(1010, d.pages(TASK));
        assertEquals(3, d.pages(SHMEM));
        assertEquals(3, d.runs(), "two task runs and one shmem run");
        assertEquals(List.of(TASK, SHMEM), d.pagemaps());
        assertEquals(3 * 20 + 1013 * 8, d.memoryBytes());
        assertEquals(7 + 31 * 999, d.digest(TASK, BASE + 999 * 4096L));
        assertEquals(-9, d.digest(TASK, BASE + 2009 * 4096L));
        assertEquals(11, d.digest(SHMEM, 0));
        assertEquals(3, d.digest(SHMEM, 8192));
        assertFalse(d.contains(TASK, BASE + 1000 * 4096L));
        assertFalse(d.contains(TASK, BASE - 4096));
        assertFalse(d.contains(TASK, BASE + 2010 * 4096L));
        assertFalse(d.contains(PagemapId.task(1), BASE));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> d.digest(SHMEM, 12288));
        assertEquals("no digest for pagemap=pagemap-shmem-77.img vaddr=0x3000", e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> PageDigests.builder().add(TASK, 100, 0));
    }

    @Test
    void cursorFindsAscendingPagesAndMisses() {
        PageDigests d = sample();
        PageDigests.Cursor c = d.cursor(TASK);
        for (int p = 0; p < 2100; p++) {
            boolean expected = p < 1000 || (p >= 2000 && p < 2010);
            assertEquals(expected, c.find(BASE + p * 4096L), "page " + p);
            if (expected) {
                assertEquals(p < 1000 ? p * 31L + 7 : -(p - 2000), c.digest());
            }
        }
        assertTrue(c.find(BASE), "going back still works (binary search)");
        assertFalse(d.cursor(PagemapId.shmem(1)).find(0));
        assertFalse(PageDigests.empty().cursor(TASK).find(BASE));
    }

    @Test
    void roundTripsThroughTheFile(@TempDir Path dir) throws Exception {
        PageDigests d = sample();
        Path file = d.write(dir);
        assertEquals(dir.resolve("pageflux-digests.bin"), file);
        // header + 2 table headers + 3 runs + 1013 digests + trailer
        assertEquals(40 + 2 * 32 + 3 * 16 + 1013 * 8 + 8, Files.size(file));
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals("PFDIGEST", new String(Files.readAllBytes(file), 0, 8, java.nio.charset.StandardCharsets.US_ASCII));
        assertEquals(4242, b.getInt(20));
        assertEquals(123_456_789L, b.getLong(24));
        PageDigests back = PageDigests.read(dir);
        assertEquals(d, back);
        assertEquals(4242, back.pid());
        assertEquals(123_456_789L, back.dumpUptimeMicros());
        assertEquals(11, back.digest(SHMEM, 0));
        try (var files = Files.list(dir)) {
            assertEquals(List.of(file), files.toList(), "no temporary file left");
        }
    }

    @Test
    void damagedFilesAreRejectedWithFileOffsetAndField(@TempDir Path dir) throws Exception {
        assertThrows(NoSuchFileException.class, () -> PageDigests.read(dir));
        Path file = sample().write(dir);
        byte[] good = Files.readAllBytes(file);

        byte[] flipped = good.clone();
        flipped[200] ^= 1;
        Files.write(file, flipped);
        DigestFileException e = assertThrows(DigestFileException.class, () -> PageDigests.read(dir));
        assertEquals(good.length - 8, e.offset());
        assertTrue(e.getMessage().startsWith("bad digest file: file=" + file + " offset=" + (good.length - 8)
                + " field=checksum"), e.getMessage());

        Files.write(file, java.util.Arrays.copyOf(good, 30));
        e = assertThrows(DigestFileException.class, () -> PageDigests.read(dir));
        assertTrue(e.getMessage().contains("field=length"), e.getMessage());

        // a well-checksummed file of another version
        byte[] v2 = good.clone();
        v2[8] = 2;
        Files.write(file, withChecksum(v2));
        e = assertThrows(DigestFileException.class, () -> PageDigests.read(dir));
        assertEquals(8, e.offset());
        assertTrue(e.getMessage().contains("field=version: 2 != 1"), e.getMessage());

        // a run count that does not fit
        byte[] runs = good.clone();
        ByteBuffer.wrap(runs).order(ByteOrder.LITTLE_ENDIAN).putLong(40 + 16, 1_000_000);
        Files.write(file, withChecksum(runs));
        e = assertThrows(DigestFileException.class, () -> PageDigests.read(dir));
        assertTrue(e.getMessage().contains("field=pagemap[0].runs/pages: runs=1000000 pages=1010 do not fit"),
                e.getMessage());
    }

    @Test
    void theSoftDirtyClearedFlagRoundTripsAndUnknownFlagsAreRefused(@TempDir Path dir) throws Exception {
        PageDigests plain = sample();
        assertFalse(plain.softDirtyCleared());
        Path file = plain.write(dir);
        assertEquals(0, ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN).getInt(36));
        assertFalse(PageDigests.read(dir).softDirtyCleared());

        PageDigests cleared = plain.withSoftDirtyCleared(true);
        assertTrue(cleared.softDirtyCleared());
        assertFalse(cleared.equals(plain));
        assertTrue(cleared.forDump(1, 2).softDirtyCleared(), "relabelling keeps the flag");
        cleared.write(dir);
        byte[] good = Files.readAllBytes(file);
        assertEquals(1, ByteBuffer.wrap(good).order(ByteOrder.LITTLE_ENDIAN).getInt(36));
        PageDigests back = PageDigests.read(dir);
        assertTrue(back.softDirtyCleared());
        assertEquals(cleared, back);
        assertEquals(plain.pages(), back.pages());

        byte[] newer = good.clone();
        newer[36] = 3;
        Files.write(file, withChecksum(newer));
        DigestFileException e = assertThrows(DigestFileException.class, () -> PageDigests.read(dir));
        assertEquals(36, e.offset());
        assertTrue(e.getMessage().contains("field=flags: 0x3 has unknown bits"), e.getMessage());
    }

    private static byte[] withChecksum(byte[] bytes) {
        CRC32C crc = new CRC32C();
        crc.update(bytes, 0, bytes.length - 8);
        ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).putLong(bytes.length - 8, crc.getValue());
        return bytes;
    }
}
