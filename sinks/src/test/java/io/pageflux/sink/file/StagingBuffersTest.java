package io.pageflux.sink.file;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.nio.file.ExtendedOpenOption;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** Files of one writer sharing a bounded {@link StagingBuffers}: same bytes, bounded memory, freed at the end. */
class StagingBuffersTest {

    @TempDir
    Path tmp;

    /** How a file system treats O_DIRECT; the last three take the page-cache path. */
    enum Mode {
        DIRECT_WHERE_ALLOWED(true),
        REFUSED_AT_OPEN(true),
        REFUSED_AT_FIRST_WRITE(true),
        PAGE_CACHE(false);

        final boolean tryDirect;

        Mode(boolean tryDirect) {
            this.tryDirect = tryDirect;
        }

        DirectFileOutput.Opener opener() {
            return switch (this) {
                case REFUSED_AT_OPEN -> (f, options) -> {
                    if (Arrays.asList(options).contains(ExtendedOpenOption.DIRECT)) {
                        throw new IOException("Invalid argument");
                    }
                    return FileChannel.open(f, options);
                };
                case REFUSED_AT_FIRST_WRITE -> (f, options) -> {
                    FileChannel real = FileChannel.open(f, options);
                    return Arrays.asList(options).contains(ExtendedOpenOption.DIRECT)
                            ? new DirectFileOutputTest.RefusingChannel(real, 0) : real;
                };
                default -> FileChannel::open;
            };
        }
    }

    /** One file being written and what it should contain. */
    private record Written(DirectFileOutput out, ByteArrayOutputStream expected) {
    }

    private static List<Written> open(Path dir, int files, Mode mode, StagingBuffers buffers) throws IOException {
        List<Written> w = new ArrayList<>();
        for (int i = 0; i < files; i++) {
            w.add(new Written(new DirectFileOutput(dir.resolve("pages-" + i + ".img"), mode.tryDirect, buffers,
                    mode.opener()), new ByteArrayOutputStream()));
        }
        return w;
    }

    /**
     * One write of a random kind: a few bytes from the heap, an unaligned direct buffer, whole pages
     * at a page-aligned address (below and above the pass-through size).
     */
    private static void writeRandom(Random rnd, Written w) throws IOException {
        byte[] data;
        ByteBuffer b;
        switch (rnd.nextInt(4)) {
            case 0 -> {
                data = bytes(rnd, 1 + rnd.nextInt(9000));
                b = ByteBuffer.wrap(data);
            }
            case 1 -> {
                data = bytes(rnd, 1 + rnd.nextInt(300 << 10));
                b = ByteBuffer.allocateDirect(data.length + 1).position(1).slice().put(data).flip();
            }
            case 2 -> {
                data = bytes(rnd, 4096 * (1 + rnd.nextInt(16)));
                b = aligned(data);
            }
            default -> {
                data = bytes(rnd, 4096 * (64 + rnd.nextInt(448)));
                b = aligned(data);
            }
        }
        w.out().write(b);
        w.expected().writeBytes(data);
        assertEquals(w.expected().size(), w.out().bytesWritten());
    }

    private static byte[] bytes(Random rnd, int n) {
        byte[] b = new byte[n];
        rnd.nextBytes(b);
        return b;
    }

    private static ByteBuffer aligned(byte[] data) {
        return ByteBuffer.allocateDirect(data.length + 4096).alignedSlice(4096).put(0, data).limit(data.length);
    }

    @ParameterizedTest
    @EnumSource(Mode.class)
    void interleavedFilesSharingOneOrTwoBuffersHoldExactlyTheirBytes(Mode mode) throws IOException {
        for (int buffers = 1; buffers <= 2; buffers++) {
            Path dir = Files.createDirectory(tmp.resolve("b" + buffers));
            StagingBuffers staging = new StagingBuffers(buffers);
            List<Written> files = open(dir, 9, mode, staging);
            Random rnd = new Random(42 + buffers);
            for (int i = 0; i < 160; i++) {
                writeRandom(rnd, files.get(rnd.nextInt(files.size())));
            }
            assertTrue(staging.takeovers() > 20, "buffers were passed between files: " + staging.takeovers());
            assertEquals(staging.maxBytes(), staging.peakAllocatedBytes(), "every buffer was used, no more");
            List<Written> order = new ArrayList<>(files);
            java.util.Collections.shuffle(order, rnd);
            for (Written w : order) {
                if (mode != Mode.DIRECT_WHERE_ALLOWED) {
                    assertFalse(w.out().direct(), mode + ": page cache");
                }
                w.out().finish();
                w.out().close();
            }
            assertEquals(staging.maxBytes(), staging.allocatedBytes(), "kept for reuse until released");
            staging.release();
            assertEquals(0, staging.allocatedBytes(), "freed");
            for (Written w : files) {
                assertArrayEquals(w.expected().toByteArray(), Files.readAllBytes(w.out().file()), w.out().file().toString());
            }
        }
    }

    private static BufferPoolMXBean directPool() {
        return ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class).stream()
                .filter(p -> p.getName().equals("direct")).findFirst().orElseThrow();
    }

    /**
     * 200 files open at once, written in turn with unaligned pieces (the page server's case): the
     * staging memory is that of two buffers, not 200; each file not holding a buffer keeps less than
     * a block unwritten; everything is freed at the end.
     */
    @Test
    void twoHundredOpenFilesStageWithinTheBound() throws IOException {
        BufferPoolMXBean direct = directPool();
        StagingBuffers staging = new StagingBuffers();
        long jvmBefore = StagingBuffers.allocatedBytesInJvm();
        long directBefore = direct.getMemoryUsed();
        List<Written> files = open(tmp, 200, Mode.DIRECT_WHERE_ALLOWED, staging);
        Random rnd = new Random(7);
        for (int round = 0; round < 3; round++) {
            for (Written w : files) {
                byte[] data = bytes(rnd, 5000 + rnd.nextInt(20_000));
                w.out().write(ByteBuffer.wrap(data)); // heap: the test itself allocates no direct memory
                w.expected().writeBytes(data);
            }
        }
        assertEquals(2L * StagingBuffers.BYTES_PER_BUFFER, staging.peakAllocatedBytes());
        assertEquals(staging.maxBytes(), StagingBuffers.allocatedBytesInJvm() - jvmBefore);
        // the JDK's own count: 200 buffers of 1 MiB would be 200 MiB (1 MiB of slack for the JDK's temporary buffers)
        long grown = direct.getMemoryUsed() - directBefore;
        assertTrue(grown <= staging.maxBytes() + (1 << 20), "direct memory grew by " + grown);
        int unwrittenOverABlock = 0;
        for (Written w : files) {
            long unwritten = w.out().bytesWritten() - Files.size(w.out().file());
            assertTrue(unwritten >= 0 && unwritten < DirectFileOutput.STAGING_BYTES, w.out().file() + ": " + unwritten);
            if (unwritten >= 4096) {
                unwrittenOverABlock++; // only files holding a buffer
            }
        }
        assertTrue(unwrittenOverABlock <= 2, "files with a block or more staged: " + unwrittenOverABlock);
        for (Written w : files) {
            w.out().finish();
        }
        staging.release();
        assertEquals(0, staging.allocatedBytes());
        assertEquals(jvmBefore, StagingBuffers.allocatedBytesInJvm());
        long left = direct.getMemoryUsed() - directBefore;
        assertTrue(left < (1 << 20), "freed at once, not left to the garbage collector: direct memory still up by " + left);
        for (Written w : files) {
            assertArrayEquals(w.expected().toByteArray(), Files.readAllBytes(w.out().file()));
        }
    }

    @Test
    void releasingDetachesAFileStillHoldingABufferSoItCannotLookComplete() throws IOException {
        StagingBuffers staging = new StagingBuffers(1);
        DirectFileOutput done = new DirectFileOutput(tmp.resolve("done"), true, staging);
        DirectFileOutput holder = new DirectFileOutput(tmp.resolve("holder"), true, staging);
        done.write(ByteBuffer.wrap(new byte[] {1, 2, 3}));
        done.finish();
        holder.write(ByteBuffer.wrap(new byte[] {4, 5, 6}));
        staging.release();
        assertEquals(0, staging.allocatedBytes());
        IllegalStateException e = assertThrows(IllegalStateException.class, holder::finish);
        assertEquals("staged bytes of file=" + tmp.resolve("holder") + " were dropped: its staging buffers were "
                + "released before the file was finished (its image directory was committed or aborted)", e.getMessage());
        holder.close();
        assertArrayEquals(new byte[] {1, 2, 3}, Files.readAllBytes(tmp.resolve("done")));
        DirectFileOutput late = new DirectFileOutput(tmp.resolve("late"), true, staging);
        IllegalStateException l = assertThrows(IllegalStateException.class, () -> late.write(ByteBuffer.wrap(new byte[1])));
        assertTrue(l.getMessage().startsWith("staging buffers already released: file=" + tmp.resolve("late")), l.getMessage());
        late.close();
    }

    @Test
    void aFileWithItsOwnBufferFreesItWhenFinishedOrClosed() throws IOException {
        long before = StagingBuffers.allocatedBytesInJvm();
        DirectFileOutput a = new DirectFileOutput(tmp.resolve("a"), true);
        a.write(ByteBuffer.wrap(new byte[100]));
        assertEquals(before + StagingBuffers.BYTES_PER_BUFFER, StagingBuffers.allocatedBytesInJvm());
        a.finish();
        assertEquals(before, StagingBuffers.allocatedBytesInJvm());
        DirectFileOutput b = new DirectFileOutput(tmp.resolve("b"), true);
        b.write(ByteBuffer.wrap(new byte[100]));
        b.close();
        assertEquals(before, StagingBuffers.allocatedBytesInJvm());
        assertEquals(100, Files.size(tmp.resolve("a")));
    }

    /** A holder whose write fails while giving its buffer up: the error names that file, which keeps its bytes. */
    @Test
    void aFailedWriteOfTheHolderNamesTheHoldersFile() throws IOException {
        StagingBuffers staging = new StagingBuffers(1);
        DirectFileOutput.Opener failsAfterOne = (f, options) -> {
            FileChannel real = FileChannel.open(f, options);
            return Arrays.asList(options).contains(ExtendedOpenOption.DIRECT)
                    ? new DirectFileOutputTest.RefusingChannel(real, 1) : real;
        };
        Path a = tmp.resolve("a");
        try (DirectFileOutput holder = new DirectFileOutput(a, true, staging, failsAfterOne);
             DirectFileOutput other = new DirectFileOutput(tmp.resolve("b"), true, staging)) {
            org.junit.jupiter.api.Assumptions.assumeTrue(holder.direct(), "needs a file system that accepts O_DIRECT");
            holder.write(aligned(new byte[DirectFileOutput.PASS_THROUGH_BYTES])); // direct proven
            holder.write(ByteBuffer.wrap(new byte[3 * 4096 + 10]));
            IOException e = assertThrows(IOException.class, () -> other.write(ByteBuffer.wrap(new byte[5])));
            assertEquals("cannot write the staged bytes of file=" + a + " bytesWritten=" + DirectFileOutput.PASS_THROUGH_BYTES
                    + " (lending its staging buffer to another file): Invalid argument", e.getMessage());
            assertEquals(DirectFileOutput.PASS_THROUGH_BYTES + 3 * 4096 + 10, holder.bytesWritten(), "still staged");
            assertEquals(0, other.bytesWritten());
        }
        staging.release();
    }

    @Test
    void bufferCountIsChecked() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new StagingBuffers(0));
        assertEquals("staging buffers=0: choose 1 to 64", e.getMessage());
    }
}
