package io.pageflux.source.incremental;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.types.size_t;
import org.junit.jupiter.api.Test;

class XxHash64Test {

    /** The reference implementation, as Debian ships it (libxxhash0): an independent oracle. */
    public interface LibXxHash {
        long XXH64(Pointer input, @size_t long length, long seed);
    }

    private static final Path LIBXXHASH = Path.of("/usr/lib/x86_64-linux-gnu/libxxhash.so.0");

    @Test
    void publishedVectors() {
        // from the xxHash documentation and test suite
        assertEquals(0xEF46DB3751D8E999L, XxHash64.hash(new byte[0], 0));
        assertEquals(0x44BC2CF5AD770999L, XxHash64.hash("abc".getBytes(StandardCharsets.US_ASCII), 0));
    }

    @Test
    void equalsTheReferenceLibraryForEveryLengthAndForPages() {
        assumeTrue(Files.exists(LIBXXHASH), "libxxhash0 is not installed (apt-get install libxxhash0)");
        LibXxHash lib = LibraryLoader.create(LibXxHash.class).load(LIBXXHASH.toString());
        jnr.ffi.Runtime runtime = jnr.ffi.Runtime.getRuntime(lib);
        Random random = new Random(42);
        ByteBuffer direct = ByteBuffer.allocateDirect(3 * 4096 + 100);
        byte[] bytes = new byte[direct.capacity()];
        random.nextBytes(bytes);
        direct.put(bytes).clear();
        Pointer base = Pointer.wrap(runtime, direct);
        long[] seeds = {0, 1, 0x9E3779B97F4A7C15L};
        for (long seed : seeds) {
            for (int length = 0; length <= 300; length++) {
                for (int offset : new int[] {0, 3}) {
                    long expected = lib.XXH64(base.slice(offset), length, seed);
                    assertEquals(expected, XxHash64.hash(direct, offset, length, seed),
                            "big-endian direct buffer, length=" + length + " offset=" + offset + " seed=" + seed);
                    assertEquals(expected, XxHash64.hash(direct.duplicate().order(ByteOrder.LITTLE_ENDIAN), offset,
                            length, seed), "length=" + length + " offset=" + offset);
                    assertEquals(expected, XxHash64.hash(ByteBuffer.wrap(bytes), offset, length, seed));
                }
            }
        }
        for (int page = 0; page < 3; page++) {
            long expected = lib.XXH64(base.slice(page * 4096L), 4096, 0);
            assertEquals(expected, XxHash64.hash(direct, page * 4096, 4096, 0), "page " + page);
        }
    }

    @Test
    void oneBitChangesTheHash() {
        byte[] page = new byte[4096];
        long h = XxHash64.hash(page, 0);
        page[4095] = 1;
        assertNotEquals(h, XxHash64.hash(page, 0));
        assertThrows(IndexOutOfBoundsException.class, () -> XxHash64.hash(ByteBuffer.allocate(10), 8, 4, 0));
    }
}
