package io.pageflux.sink.file;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.sun.nio.file.ExtendedOpenOption;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

public class DirectFileOutputTest {

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

    /** Page-aligned direct memory holding {@code data}, like a pool buffer. */
    private static ByteBuffer aligned(byte[] data) {
        ByteBuffer b = ByteBuffer.allocateDirect(data.length + 2 * 4096).alignedSlice(4096);
        return b.put(0, data).limit(data.length);
    }

    /** O_DIRECT is in the flags of the descriptor open on {@code file} (x86-64 and arm64: 040000 / 0200000). */
    public static boolean openWithODirect(Path file) throws IOException {
        int oDirect = System.getProperty("os.arch").equals("aarch64") ? 0200000 : 040000;
        try (var fds = Files.list(Path.of("/proc/self/fd"))) {
            for (Path fd : fds.toList()) {
                Path target;
                try {
                    target = Files.readSymbolicLink(fd);
                } catch (IOException gone) {
                    continue; // the descriptor of the listing itself
                }
                if (target.equals(file.toAbsolutePath())) {
                    for (String line : Files.readAllLines(Path.of("/proc/self/fdinfo", fd.getFileName().toString()))) {
                        if (line.startsWith("flags:")) {
                            return (Integer.parseInt(line.substring(6).trim(), 8) & oDirect) != 0;
                        }
                    }
                }
            }
        }
        throw new AssertionError("no open descriptor for " + file);
    }

    @Test
    void alignedPagesGoStraightFromTheCallersBufferWithOdirect() throws IOException {
        assumeTrue(Files.getFileStore(tmp).type().startsWith("ext") || Files.getFileStore(tmp).type().equals("xfs"),
                "O_DIRECT is checked on ext4/xfs only: tmp is " + Files.getFileStore(tmp).type());
        Path file = tmp.resolve("f");
        byte[] small = data(3 * 4096);                              // staged: under PASS_THROUGH_BYTES
        byte[] big = data(DirectFileOutput.STAGING_BYTES * 4);      // 4 MiB chunk, page-aligned
        byte[] odd = data(DirectFileOutput.PASS_THROUGH_BYTES + 5); // long enough but unaligned length
        try (DirectFileOutput out = new DirectFileOutput(file, true)) {
            assertTrue(openWithODirect(file), "the file is open with O_DIRECT");
            out.write(aligned(big));
            assertEquals(big.length, out.bytesPassedThrough(), "a whole aligned chunk is not copied");
            out.write(aligned(small));
            // the staging buffer holds 12 KiB: the next chunk fills it to 1 MiB, the rest passes through
            out.write(aligned(big));
            assertEquals(2L * big.length - (DirectFileOutput.STAGING_BYTES - small.length), out.bytesPassedThrough());
            out.write(aligned(odd));
            out.finish();
            assertTrue(out.direct());
        }
        byte[] expected = new byte[2 * big.length + small.length + odd.length];
        System.arraycopy(big, 0, expected, 0, big.length);
        System.arraycopy(small, 0, expected, big.length, small.length);
        System.arraycopy(big, 0, expected, big.length + small.length, big.length);
        System.arraycopy(odd, 0, expected, 2 * big.length + small.length, odd.length);
        assertArrayEquals(expected, Files.readAllBytes(file));
    }

    @Test
    void unalignedAndHeapBuffersAreStagedNotPassedThrough() throws IOException {
        Path file = tmp.resolve("f");
        byte[] data = data(2 * DirectFileOutput.STAGING_BYTES + 8192);
        try (DirectFileOutput out = new DirectFileOutput(file, true)) {
            assumeTrue(out.direct(), "needs a file system that accepts O_DIRECT");
            out.write(ByteBuffer.wrap(data, 0, 4096));                           // heap
            ByteBuffer shifted = ByteBuffer.allocateDirect(data.length + 8192).alignedSlice(4096);
            shifted.position(1).put(data, 4096, data.length - 4096).flip().position(1); // address off by one
            out.write(shifted);
            assertEquals(0, out.bytesPassedThrough());
            out.finish();
        }
        assertArrayEquals(data, Files.readAllBytes(file));
    }

    /** ramfs refuses O_DIRECT at open (EINVAL): the file goes through the page cache, same bytes. */
    @Test
    void aFileSystemRefusingOdirectAtOpenGetsThePageCache() throws Exception {
        Path mnt = Files.createDirectory(tmp.resolve("ramfs"));
        Process mount = new ProcessBuilder("mount", "-t", "ramfs", "ramfs", mnt.toString()).redirectErrorStream(true).start();
        boolean mounted = mount.waitFor(30, TimeUnit.SECONDS) && mount.exitValue() == 0;
        assumeTrue(mounted, "cannot mount a ramfs here (not root?): " + new String(mount.getInputStream().readAllBytes()));
        try {
            Path file = mnt.resolve("f");
            assertThrows(IOException.class, () -> FileChannel.open(file, java.nio.file.StandardOpenOption.CREATE_NEW,
                    java.nio.file.StandardOpenOption.WRITE, ExtendedOpenOption.DIRECT), "ramfs refuses O_DIRECT");
            Files.deleteIfExists(file);
            byte[] data = data(4 * DirectFileOutput.STAGING_BYTES + 100);
            try (DirectFileOutput out = new DirectFileOutput(file, true)) {
                assertFalse(out.direct());
                assertFalse(openWithODirect(file));
                out.write(aligned(data));
                out.finish();
            }
            assertArrayEquals(data, Files.readAllBytes(file));
        } finally {
            Process umount = new ProcessBuilder("umount", mnt.toString()).redirectErrorStream(true).start();
            assertTrue(umount.waitFor(30, TimeUnit.SECONDS) && umount.exitValue() == 0,
                    "umount " + mnt + ": " + new String(umount.getInputStream().readAllBytes()));
        }
    }

    /**
     * A file system that accepts O_DIRECT at open but refuses the write with EINVAL (some FUSE and
     * overlay set-ups): injected, since none is at hand. The file falls back to the page cache.
     */
    @Test
    void aFileSystemRefusingTheFirstDirectWriteGetsThePageCache() throws IOException {
        Path file = tmp.resolve("f");
        List<Boolean> opens = new ArrayList<>();
        DirectFileOutput.Opener refusing = (f, options) -> {
            boolean direct = Arrays.asList(options).contains(ExtendedOpenOption.DIRECT);
            opens.add(direct);
            FileChannel real = FileChannel.open(f, options);
            return direct ? new RefusingChannel(real, 0) : real;
        };
        byte[] data = data(DirectFileOutput.STAGING_BYTES * 2 + 4096);
        try (DirectFileOutput out = new DirectFileOutput(file, true, refusing)) {
            assertTrue(out.direct(), "accepted at open");
            out.write(aligned(data));
            assertFalse(out.direct(), "refused at the first write");
            out.finish();
        }
        assertEquals(List.of(true, false), opens, "reopened once without O_DIRECT");
        assertArrayEquals(data, Files.readAllBytes(file));
    }

    /** After a direct write succeeded, EINVAL is an error to report, not a refusal to hide. */
    @Test
    void invalidArgumentAfterADirectWriteIsAnError() throws IOException {
        Path file = tmp.resolve("f");
        DirectFileOutput.Opener failsLater = (f, options) -> {
            FileChannel real = FileChannel.open(f, options);
            return Arrays.asList(options).contains(ExtendedOpenOption.DIRECT) ? new RefusingChannel(real, 1) : real;
        };
        byte[] data = data(DirectFileOutput.STAGING_BYTES);
        try (DirectFileOutput out = new DirectFileOutput(file, true, failsLater)) {
            assumeTrue(out.direct(), "needs a file system that accepts O_DIRECT");
            out.write(aligned(data));
            IOException e = assertThrows(IOException.class, () -> out.write(aligned(data)));
            assertEquals("Invalid argument", e.getMessage());
            assertTrue(out.direct());
        }
    }

    /** Delegates to a real channel; positioned writes fail with EINVAL after {@code okWrites} succeeded. */
    static final class RefusingChannel extends FileChannel {
        private final FileChannel real;
        private int okWrites;

        RefusingChannel(FileChannel real, int okWrites) {
            this.real = real;
            this.okWrites = okWrites;
        }

        @Override
        public int write(ByteBuffer src, long position) throws IOException {
            if (okWrites-- <= 0) {
                throw new IOException("Invalid argument");
            }
            return real.write(src, position);
        }

        @Override
        public int read(ByteBuffer dst) throws IOException {
            return real.read(dst);
        }

        @Override
        public long read(ByteBuffer[] dsts, int offset, int length) throws IOException {
            return real.read(dsts, offset, length);
        }

        @Override
        public int write(ByteBuffer src) throws IOException {
            return real.write(src);
        }

        @Override
        public long write(ByteBuffer[] srcs, int offset, int length) throws IOException {
            return real.write(srcs, offset, length);
        }

        @Override
        public long position() throws IOException {
            return real.position();
        }

        @Override
        public FileChannel position(long newPosition) throws IOException {
            real.position(newPosition);
            return this;
        }

        @Override
        public long size() throws IOException {
            return real.size();
        }

        @Override
        public FileChannel truncate(long size) throws IOException {
            real.truncate(size);
            return this;
        }

        @Override
        public void force(boolean metaData) throws IOException {
            real.force(metaData);
        }

        @Override
        public long transferTo(long position, long count, WritableByteChannel target) throws IOException {
            return real.transferTo(position, count, target);
        }

        @Override
        public long transferFrom(ReadableByteChannel src, long position, long count) throws IOException {
            return real.transferFrom(src, position, count);
        }

        @Override
        public int read(ByteBuffer dst, long position) throws IOException {
            return real.read(dst, position);
        }

        @Override
        public MappedByteBuffer map(MapMode mode, long position, long size) throws IOException {
            return real.map(mode, position, size);
        }

        @Override
        public FileLock lock(long position, long size, boolean shared) throws IOException {
            return real.lock(position, size, shared);
        }

        @Override
        public FileLock tryLock(long position, long size, boolean shared) throws IOException {
            return real.tryLock(position, size, shared);
        }

        @Override
        protected void implCloseChannel() throws IOException {
            real.close();
        }
    }
}
