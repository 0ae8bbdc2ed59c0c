package io.pageflux.sink.compress;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DirectFileOutputTest {

    @TempDir
    Path tmp;

    /** Writes {@code data} in pieces of odd sizes (crossing block and staging-buffer boundaries). */
    private static void writeInPieces(DirectFileOutput out, byte[] data) throws IOException {
        int[] sizes = {1, 4095, 4097, 100_000, DirectFileOutput.STAGING_BYTES + 3, 17};
        int at = 0;
        for (int i = 0; at < data.length; i++) {
            int n = Math.min(sizes[i % sizes.length], data.length - at);
            ByteBuffer piece = ByteBuffer.allocateDirect(n).put(data, at, n).flip();
            out.write(piece);
            assertEquals(0, piece.position(), "write leaves the source's position alone");
            at += n;
            assertEquals(at, out.bytesWritten());
        }
    }

    private static byte[] data(int length) {
        byte[] b = new byte[length];
        new Random(length).nextBytes(b);
        return b;
    }

    @Test
    void writesExactlyTheBytesWithOdirectAndAnUnalignedTail() throws IOException {
        Path file = tmp.resolve("f");
        assumeTrue(Files.getFileStore(tmp).type().startsWith("ext") || Files.getFileStore(tmp).type().equals("xfs"),
                "O_DIRECT is checked on ext4/xfs only: tmp is " + Files.getFileStore(tmp).type());
        byte[] data = data(3 * DirectFileOutput.STAGING_BYTES + 12_345);
        try (DirectFileOutput out = new DirectFileOutput(file, true)) {
            assertTrue(out.direct(), "ext4 accepts O_DIRECT");
            writeInPieces(out, data);
            out.finish();
        }
        assertArrayEquals(data, Files.readAllBytes(file));
    }

    @Test
    void throughThePageCacheTheBytesAreTheSame() throws IOException {
        // the path taken when a file system refuses O_DIRECT
        Path file = tmp.resolve("f");
        byte[] data = data(DirectFileOutput.STAGING_BYTES + 4096 + 7);
        try (DirectFileOutput out = new DirectFileOutput(file, false)) {
            assertFalse(out.direct());
            writeInPieces(out, data);
            out.finish();
        }
        assertArrayEquals(data, Files.readAllBytes(file));
    }

    @Test
    void anExistingFileIsNeitherReplacedNorDeleted() throws IOException {
        Path file = Files.writeString(tmp.resolve("f"), "mine");
        assertThrows(FileAlreadyExistsException.class, () -> new DirectFileOutput(file, true));
        assertEquals("mine", Files.readString(file));
    }

    @Test
    void aFileOfWholeBlocksHasNoTailAndAnEmptyFileIsEmpty() throws IOException {
        byte[] data = data(2 * DirectFileOutput.STAGING_BYTES);
        Path whole = tmp.resolve("whole");
        try (DirectFileOutput out = new DirectFileOutput(whole, true)) {
            writeInPieces(out, data);
            out.finish();
            out.finish(); // idempotent
        }
        assertArrayEquals(data, Files.readAllBytes(whole));
        Path empty = tmp.resolve("empty");
        try (DirectFileOutput out = new DirectFileOutput(empty, true)) {
            out.finish();
        }
        assertEquals(0, Files.size(empty));
    }
}
