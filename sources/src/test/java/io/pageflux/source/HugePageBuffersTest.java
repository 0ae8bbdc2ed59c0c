package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

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
        Path thpSetting = Path.of("/sys/kernel/mm/transparent_hugepage/enabled");
        // a kernel built without THP has no such file (and no hg flag to look for)
        assumeTrue(Files.exists(thpSetting), thpSetting + " is missing: THP compiled out, the advice is not checked");
        String thp = Files.readString(thpSetting);
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
    void unreachableBuffersAreUnmappedButNotWhileASliceLives() throws InterruptedException {
        ByteBuffer b = HugePageBuffers.allocate(2 * MIB);
        ByteBuffer control = HugePageBuffers.allocate(2 * MIB);
        long address = NativeBuffers.address(b);
        long controlAddress = NativeBuffers.address(control);
        ByteBuffer slice = b.slice(4096, 4096);
        assertTrue(HugePageBuffers.isMapped(address));
        assertTrue(HugePageBuffers.mappedBytes() >= 4 * MIB);
        b = null;
        control = null;
        // once the control buffer (no slice) is unmapped, the cleaner has seen both buffers' fate
        awaitUnmapped(controlAddress);
        assertFalse(HugePageBuffers.isMapped(controlAddress), "control buffer still mapped after GCs");
        // a slice refers to its buffer: nothing is unmapped while it lives
        assertTrue(HugePageBuffers.isMapped(address), "unmapped under a live slice: 0x" + Long.toHexString(address));
        slice.put(0, (byte) 3);
        assertEquals(3, slice.get(0));
        slice = null;
        awaitUnmapped(address);
        assertFalse(HugePageBuffers.isMapped(address), "unmapped once unreachable: 0x" + Long.toHexString(address));
    }

    @Test
    void aMappingUnmapsAtOnceWithoutAGc() {
        HugePageBuffers.Mapping m = HugePageBuffers.map(4 * MIB);
        long address = NativeBuffers.address(m.buffer());
        m.buffer().put(0, (byte) 1);
        long before = HugePageBuffers.mappedBytes();
        assertTrue(HugePageBuffers.isMapped(address));
        m.unmap();
        assertFalse(HugePageBuffers.isMapped(address));
        // at most: buffers other tests left to the GC may be cleaned meanwhile, never re-mapped
        assertTrue(HugePageBuffers.mappedBytes() <= before - 4 * MIB,
                "mapped=" + HugePageBuffers.mappedBytes() + " before=" + before);
        m.unmap(); // a Cleanable runs once: a second call (or the GC finding the buffer) does nothing
        assertFalse(HugePageBuffers.isMapped(address));
    }

    private static void awaitUnmapped(long address) throws InterruptedException {
        for (int i = 0; i < 200 && HugePageBuffers.isMapped(address); i++) {
            System.gc();
            Thread.sleep(20);
        }
    }
}
