package io.pageflux.sink.file;

import com.sun.nio.file.ExtendedOpenOption;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.OpenOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import reactor.util.Logger;
import reactor.util.Loggers;

/**
 * An append-only file written with {@code O_DIRECT}, so a dump's output does not go through the
 * page cache. Shared by the raw pages files ({@code pages-<id>.img}) and the compressed ones.
 *
 * <p>Why: a dump is written once and read later; through the page cache it costs the kernel a
 * fresh page for every 4 KiB written and then the write-back, all on the dumping machine's CPUs,
 * and it evicts the machine's useful cache. On the 2-core development VM buffered writes plus
 * {@code fsync} reach about 0.3–0.45 GiB/s, while the same disk takes {@code O_DIRECT} writes at
 * 1.1–1.5 GiB/s ({@code dd bs=4M oflag=direct}).
 *
 * <p>How: a write whose buffer address, length and file offset are block-aligned (a page-aligned
 * pool buffer holding whole pages) and at least {@link #PASS_THROUGH_BYTES} long goes to the file
 * straight from the caller's buffer, without a copy. Anything else is copied into a block-aligned
 * staging buffer, written in whole {@link #STAGING_BYTES} batches. {@link #finish()} writes the
 * last whole blocks directly and the tail (less than one block) through a second, ordinary
 * descriptor, then fsyncs.
 *
 * <p>Fallback: when the file system refuses {@code O_DIRECT} ({@code EINVAL} at open, as ramfs
 * does, or at the first write, as some FUSE and overlay set-ups do), the file is written through
 * the page cache instead and one warning line is logged; the bytes are the same.
 *
 * <p>Memory: the staging buffer is borrowed from a {@link StagingBuffers} shared by all the files of
 * one writer (a dump, a page-server session), so their staging memory is bounded whatever the
 * number of files; a file that only receives large aligned writes never borrows one. While another
 * file has the buffer, this one keeps the staged bytes that do not fill a whole block (less than
 * one block) in a small array. A file created without a {@code StagingBuffers} gets one buffer of
 * its own, freed when it is finished or closed. One thread at a time.
 */
public final class DirectFileOutput implements AutoCloseable {

    /** Bytes written per system call when staged; large writes are what makes direct I/O fast. */
    public static final int STAGING_BYTES = 1 << 20;

    /**
     * The smallest write sent straight from the caller's buffer: smaller ones are batched in the
     * staging buffer, because a direct write waits for the device and many small ones are slow.
     */
    public static final int PASS_THROUGH_BYTES = 256 << 10;

    /** The largest file-system block size used as O_DIRECT alignment; the staging buffer holds 16 of them. */
    static final int MAX_ALIGNMENT = 64 * 1024;
    private static final Logger LOG = Loggers.getLogger(DirectFileOutput.class);
    private static final byte[] NONE = new byte[0];

    /** Opens the file; a seam so tests can stand in for a file system that refuses direct writes. */
    @FunctionalInterface
    interface Opener {
        FileChannel open(Path file, OpenOption... options) throws IOException;
    }

    private final Path file;
    private final Opener opener;
    private FileChannel channel;
    private boolean direct;
    private final int block;
    private final StagingBuffers buffers;
    /** Whether {@link #buffers} is this file's own, released with it. */
    private final boolean ownBuffers;
    /** The borrowed buffer, or null while this file holds none. */
    private StagingBuffers.Lease lease;
    /** {@code lease}'s buffer, or null: staged bytes from 0 to its position. */
    private ByteBuffer staging;
    /** The staged bytes while no buffer is held (less than one block; put back first when one is borrowed). */
    private byte[] remainder = NONE;
    /** Set when the buffers were released while this file held one: its staged bytes are gone. */
    private boolean detached;
    /** Where the staging buffer's first byte goes in the file (block-aligned while direct). */
    private long flushed;
    /** Whether a direct write has succeeded (after that, EINVAL is an error, not a refusal). */
    private boolean directProven;
    private long passedThrough;
    private boolean finished;

    /**
     * Creates {@code file}, which must not exist.
     *
     * @param tryDirect false to go through the page cache in any case
     * @throws FileAlreadyExistsException if {@code file} exists (it is left alone)
     */
    public DirectFileOutput(Path file, boolean tryDirect) throws IOException {
        this(file, tryDirect, null, FileChannel::open);
    }

    /**
     * Creates {@code file}, which must not exist, staging through {@code buffers}: the writer that
     * owns {@code buffers} releases them when it ends, after finishing or closing this file.
     *
     * @param tryDirect false to go through the page cache in any case
     * @param buffers   the staging buffers of all files of this writer
     * @throws FileAlreadyExistsException if {@code file} exists (it is left alone)
     */
    public DirectFileOutput(Path file, boolean tryDirect, StagingBuffers buffers) throws IOException {
        this(file, tryDirect, java.util.Objects.requireNonNull(buffers, "buffers"), FileChannel::open);
    }

    DirectFileOutput(Path file, boolean tryDirect, Opener opener) throws IOException {
        this(file, tryDirect, null, opener);
    }

    /** {@code buffers} null: one buffer of this file's own. */
    DirectFileOutput(Path file, boolean tryDirect, StagingBuffers buffers, Opener opener) throws IOException {
        this.file = file;
        this.opener = opener;
        this.ownBuffers = buffers == null;
        this.buffers = buffers != null ? buffers : new StagingBuffers(1);
        FileChannel ch = null;
        int blockSize = 4096;
        if (tryDirect) {
            blockSize = alignment(file);
            try {
                ch = opener.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE,
                        ExtendedOpenOption.DIRECT);
            } catch (FileAlreadyExistsException e) {
                throw e;
            } catch (UnsupportedOperationException | IOException e) {
                // O_DIRECT refused (EINVAL): with CREATE_NEW, a file there now is the one this open created
                Files.deleteIfExists(file);
                refused("open", e);
            }
        }
        this.direct = ch != null;
        this.channel = ch != null ? ch : opener.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
        this.block = blockSize;
    }

    /**
     * The alignment used for direct writes: the file system's reported block size when it is a power of
     * two from 4 KiB to {@value #MAX_ALIGNMENT} bytes, else 4 KiB. The report is the preferred I/O size
     * ({@code st_blksize}), which network file systems set to megabytes; O_DIRECT needs only the logical
     * block size (512 or 4096 on every device here), and a block that large would not fit the staging
     * buffer. If 4 KiB is not enough after all, the first write fails with EINVAL and the file falls back
     * to the page cache.
     */
    private static int alignment(Path file) {
        long reported;
        try {
            reported = Files.getFileStore(file.toAbsolutePath().getParent()).getBlockSize();
        } catch (IOException | UnsupportedOperationException e) {
            return 4096;
        }
        boolean usable = reported >= 4096 && reported <= MAX_ALIGNMENT && Long.bitCount(reported) == 1;
        return usable ? (int) reported : 4096;
    }

    private void refused(String at, Exception e) {
        LOG.warn("direct I/O refused, writing through the page cache: file={} at={} cause=\"{}\"",
                file, at, e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage());
    }

    /** Appends {@code src} (position to limit; its position is left unchanged). */
    public void write(ByteBuffer src) throws IOException {
        ByteBuffer s = src.duplicate();
        while (s.hasRemaining()) {
            if (staged() == 0 && s.remaining() >= PASS_THROUGH_BYTES && aligned(s)) {
                // straight from the caller's buffer: a whole number of blocks (direct), or all of it
                int n = direct ? s.remaining() - s.remaining() % block : s.remaining();
                ByteBuffer out = s.duplicate().limit(s.position() + n);
                writeAt(out, flushed);
                flushed += n;
                passedThrough += n;
                s.position(s.position() + n);
                continue;
            }
            ByteBuffer st = staging();
            int n = Math.min(s.remaining(), st.remaining());
            st.put(st.position(), s, s.position(), n);
            st.position(st.position() + n);
            s.position(s.position() + n);
            if (!st.hasRemaining()) {
                flushWhole();
            }
        }
    }

    /** Bytes appended but not yet written to the file. */
    private int staged() {
        return staging != null ? staging.position() : remainder.length;
    }

    /** The staging buffer, borrowed (with the remainder put back in front) if this file holds none. */
    private ByteBuffer staging() throws IOException {
        checkAttached();
        if (staging == null) {
            StagingBuffers.Lease l = buffers.lend(this);
            lease = l;
            staging = l.buffer();
            staging.put(remainder);
            remainder = NONE;
        } else {
            buffers.touch(lease);
        }
        return staging;
    }

    private void checkAttached() {
        if (detached) {
            throw new IllegalStateException("staged bytes of file=" + file + " were dropped: its staging buffers "
                    + "were released before the file was finished (its image directory was committed or aborted)");
        }
    }

    /**
     * Gives the staging buffer up for another file of the same writer: writes the whole blocks
     * staged, keeps the rest (less than a block) in {@link #remainder}.
     *
     * @throws IOException naming this file if the write fails (the buffer is then still held)
     */
    void surrender() throws IOException {
        try {
            flushWhole();
        } catch (IOException e) {
            throw new IOException("cannot write the staged bytes of file=" + file + " bytesWritten=" + flushed
                    + " (lending its staging buffer to another file): " + e.getMessage(), e);
        }
        remainder = new byte[staging.position()];
        staging.get(0, remainder);
        staging = null;
        lease = null;
    }

    /** The buffers were released while this file held one (see {@link StagingBuffers#release()}). */
    void detach() {
        detached = staging.position() > 0 || detached;
        staging = null;
        lease = null;
    }

    /** Returns the borrowed buffer, if any, and frees this file's own buffers. */
    private void returnStaging() {
        if (lease != null) {
            buffers.giveBack(lease, this);
            lease = null;
            staging = null;
        }
        if (ownBuffers) {
            buffers.release();
        }
    }

    /** Whether {@code s} can be written directly: any buffer through the page cache, aligned memory for O_DIRECT. */
    private boolean aligned(ByteBuffer s) {
        if (!direct) {
            return true;
        }
        // flushed is a multiple of the block here: the staging buffer is empty and only whole blocks were written
        return s.isDirect() && Integer.bitCount(block) == 1 && s.alignmentOffset(s.position(), block) == 0;
    }

    /** Writes all of {@code out} at {@code position}, falling back to the page cache on a first-write refusal. */
    private void writeAt(ByteBuffer out, long position) throws IOException {
        ByteBuffer b = out.duplicate();
        while (b.hasRemaining()) {
            try {
                channel.write(b, position + b.position() - out.position());
            } catch (IOException e) {
                if (!direct || directProven || !"Invalid argument".equals(e.getMessage())) {
                    throw e;
                }
                // accepted at open, refused at the first write: nothing is in the file yet
                refused("first write", e);
                channel.close();
                channel = opener.open(file, StandardOpenOption.WRITE);
                direct = false;
                continue;
            }
            directProven = direct;
        }
    }

    /** Writes the staged bytes that fill whole blocks; keeps the rest (less than a block) staged. */
    private void flushWhole() throws IOException {
        if (staging == null) {
            return; // the remainder alone is less than a block
        }
        int whole = direct ? staging.position() - staging.position() % block : staging.position();
        if (whole == 0) {
            return;
        }
        writeAt(staging.duplicate().position(0).limit(whole), flushed);
        int rest = staging.position() - whole;
        staging.put(0, staging, whole, rest);
        staging.position(rest);
        flushed += whole;
    }

    /** Writes everything staged and fsyncs; the file is complete and closed afterwards. */
    public void finish() throws IOException {
        if (finished) {
            return;
        }
        checkAttached();
        flushWhole();
        ByteBuffer tail = staging != null ? staging.duplicate().flip() : ByteBuffer.wrap(remainder);
        if (tail.hasRemaining()) {
            // the tail is not a whole block: O_DIRECT cannot write it, an ordinary descriptor can
            int n = tail.remaining();
            try (FileChannel plain = opener.open(file, StandardOpenOption.WRITE)) {
                while (tail.hasRemaining()) {
                    plain.write(tail, flushed + tail.position());
                }
                plain.force(true);
            }
            flushed += n;
            if (staging != null) {
                staging.clear().limit(STAGING_BYTES);
            }
            remainder = NONE;
        }
        channel.force(true);
        channel.close();
        returnStaging(); // the writer may live on until its directory is committed
        finished = true;
    }

    /**
     * For a caller that appends bytes through a descriptor of its own (e.g. {@code splice(2)} from a
     * socket): writes everything staged and returns the file offset where the next byte goes. Report
     * what was written there with {@link #appendedElsewhere}. Page-cache files only: O_DIRECT needs
     * block-aligned writes from aligned memory, which such a caller does not promise.
     *
     * @throws IllegalStateException if the file is written with O_DIRECT or finished
     */
    public long appendOffset() throws IOException {
        if (direct || finished) {
            throw new IllegalStateException("file=" + file + " takes no appends from another descriptor: "
                    + (finished ? "it is finished" : "it is written with O_DIRECT"));
        }
        if (staged() > 0) {
            if (staging == null) {
                staging(); // the remainder back into a buffer, to be written with it
            }
            flushWhole(); // through the page cache: everything staged is written
        }
        return flushed;
    }

    /** Counts {@code bytes} written at {@link #appendOffset()} by the caller as appended. */
    public void appendedElsewhere(long bytes) {
        if (bytes < 0 || staged() > 0) {
            throw new IllegalStateException("bytes=" + bytes + " staged=" + staged() + " file=" + file
                    + ": call appendOffset() before writing elsewhere");
        }
        flushed += bytes;
    }

    /** Bytes appended so far (staged or on disk). */
    public long bytesWritten() {
        return flushed + staged();
    }

    /** Bytes written straight from callers' buffers, without a copy into the staging buffer. */
    public long bytesPassedThrough() {
        return passedThrough;
    }

    /** Whether the file is written with {@code O_DIRECT} (false after a fallback to the page cache). */
    public boolean direct() {
        return direct;
    }

    public Path file() {
        return file;
    }

    /** Closes without finishing (the caller deletes the file); gives the staging buffer back. */
    @Override
    public void close() throws IOException {
        returnStaging();
        channel.close();
    }
}
