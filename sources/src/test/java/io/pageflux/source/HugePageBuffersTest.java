package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.nativeio.HugePageBuffers;
import io.pageflux.nativeio.NativeBuffers;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

class HugePageBuffersTest {

    private static final int MIB = 1 << 20;

    @Test
    void aBufferIsZeroedWritableAnd2MibAligned() {
        ByteBuffer b = HugePageBuffers.allocate(4 * MIB);
        assertTrue(b.isDirect());
        assertEquals(4 * MIB, b.capacity());
        assertEquals(0, NativeBuffers.address(b) % HugePageBuffers.HUGE_PAGE_SIZE,
                "address=0x" + Long.toHexString(NativeBuffers.address(b)));
        for (int i = 0; i < b.capacity(); i += 4096) {
            assertEquals(0, b.get(i), "byte " + i);
        }
        b.putLong(4 * MIB - 8, 0x1122334455667788L);
        b.put(0, (byte) 7);
        assertEquals(0x1122334455667788L, b.getLong(4 * MIB - 8));
        assertEquals(7, b.get(0));
    }

    @Test
    void theMappingIsExactlyTheBufferAndAdvisedForHugePages() throws IOException {
        ByteBuffer b = HugePageBuffers.allocate(2 * MIB);
        long start = NativeBuffers.address(b);
        b.put(0, (byte) 1); // mapped memory shows in smaps either way; touched is clearer
        List<String> smaps = Files.readAllLines(Path.of("/proc/self/smaps"));
        int at = -1;
        for (int i = 0; i < smaps.size(); i++) {
            if (smaps.get(i).startsWith(Long.toHexString(start) + "-")) {
                at = i;
            }
        }
        assertTrue(at >= 0, "no mapping starts at 0x" + Long.toHexString(start));
        String range = smaps.get(at).split(" ")[0];
        assertEquals(Long.toHexString(start) + "-" + Long.toHexString(start + 2 * MIB), range,
                "the alignment slack is unmapped");
        String thp = Files.readString(Path.of("/sys/kernel/mm/transparent_hugepage/enabled"));
        for (int i = at + 1; i < smaps.size() && !smaps.get(i).matches("^[0-9a-f]+-[0-9a-f]+ .*"); i++) {
            if (smaps.get(i).startsWith("VmFlags:")) {
                // hg: MADV_HUGEPAGE, set wherever THP is not compiled out
                assertEquals(!thp.isBlank(), smaps.get(i).contains(" hg"), smaps.get(i) + " thp=" + thp.trim());
            }
        }
    }

    @Test
    void refusesSizesThatAreNotWholeHugePages() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> HugePageBuffers.allocate(3 * MIB + 4096));
        assertEquals("size=3149824: a huge-page buffer is a positive multiple of 2097152 bytes (2 MiB); "
                + "use ByteBuffer.allocateDirect for other sizes", e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> HugePageBuffers.allocate(0));
    }

    @Test
    void unreachableBuffersAreUnmapped() throws InterruptedException {
        ByteBuffer b = HugePageBuffers.allocate(2 * MIB);
        long address = NativeBuffers.address(b);
        ByteBuffer slice = b.slice(4096, 4096);
        assertTrue(HugePageBuffers.isMapped(address));
        assertTrue(HugePageBuffers.mappedBytes() >= 2 * MIB);
        b = null;
        System.gc();
        Thread.sleep(50);
        // a slice refers to the buffer: nothing is unmapped while it lives
        assertTrue(HugePageBuffers.isMapped(address));
        slice.put(0, (byte) 3);
        assertEquals(3, slice.get(0));
        slice = null;
        for (int i = 0; i < 100 && HugePageBuffers.isMapped(address); i++) {
            System.gc();
            Thread.sleep(20);
        }
        assertFalse(HugePageBuffers.isMapped(address), "unmapped once unreachable: 0x" + Long.toHexString(address));
    }
}
