package io.pageflux.nativeio;

import java.nio.ByteBuffer;
import jnr.ffi.Pointer;

/**
 * A pipe that moves bytes from a socket into a file with {@code splice(2)}: socket → pipe takes the
 * socket buffer's pages by reference, pipe → file copies them once into the file's page cache. A
 * {@code read} + {@code write} copies every byte twice (socket → user memory → page cache).
 *
 * <p>{@link #fromSocket} never blocks ({@code SPLICE_F_NONBLOCK} on the pipe, and the socket is
 * expected in non-blocking mode): the caller waits for readability its own way, with its own timeout.
 * Every byte taken from the socket must be written out with {@link #toFile} (or taken back with
 * {@link #drain}) before the next {@link #fromSocket}. One thread at a time; close it (it holds two
 * descriptors, close-on-exec).
 */
public final class SplicePipe implements AutoCloseable {

    static final int SPLICE_F_MOVE = 1;
    static final int SPLICE_F_NONBLOCK = 2;
    static final int O_CLOEXEC = 0x80000;
    static final int F_SETPIPE_SZ = 1031;
    static final int F_GETPIPE_SZ = 1032;

    private final int readEnd;
    private final int writeEnd;
    private final int capacity;
    /** Native loff_t for the file offset of {@link #toFile}. */
    private final NativeBlock offset = new NativeBlock(8);
    /** Bytes taken from the socket and not yet written out. */
    private long held;
    private boolean closed;

    private SplicePipe(int readEnd, int writeEnd, int capacity) {
        this.readEnd = readEnd;
        this.writeEnd = writeEnd;
        this.capacity = capacity;
    }

    /**
     * Opens a pipe and asks for {@code bytes} of capacity ({@code F_SETPIPE_SZ}); when that is refused
     * (above {@code /proc/sys/fs/pipe-max-size} without CAP_SYS_RESOURCE, or an unprivileged user past
     * {@code fs.pipe-user-pages-soft}, whose pipes the kernel may even shrink to one page) the pipe keeps a
     * smaller size: check {@link #capacity()}.
     *
     * @throws NativeCallException if the pipe cannot be created (e.g. EMFILE)
     */
    public static SplicePipe open(int bytes) {
        NativeBlock block = new NativeBlock(8);
        Pointer fds = block.pointer();
        if (Native.LIBC.pipe2(fds, O_CLOEXEC) != 0) {
            throw new NativeCallException("pipe2", Native.lastErrno(), "flags=O_CLOEXEC");
        }
        int r = fds.getInt(0);
        int w = fds.getInt(4);
        block.keepAlive();
        // refused (EPERM above pipe-max-size or past fs.pipe-user-pages-soft): the pipe keeps its size, which
        // capacity() tells; the caller decides whether that is enough
        Native.LIBC.fcntl(w, F_SETPIPE_SZ, bytes);
        int size = Native.LIBC.fcntl(w, F_GETPIPE_SZ, 0);
        if (size <= 0) {
            int errno = Native.lastErrno();
            Native.LIBC.close(r);
            Native.LIBC.close(w);
            throw new NativeCallException("fcntl", errno, "cmd=F_GETPIPE_SZ fd=" + w);
        }
        return new SplicePipe(r, w, size);
    }

    /** The pipe's capacity in bytes: the most one {@link #fromSocket} moves. */
    public int capacity() {
        return capacity;
    }

    /** Bytes taken from the socket and not yet written out or drained. */
    public long held() {
        return held;
    }

    /**
     * Moves up to {@code max} bytes (at most {@link #capacity()}) from {@code socketFd} into the pipe.
     *
     * @return the bytes moved, 0 at the end of the stream, -1 when the socket has nothing now (EAGAIN)
     * @throws NativeCallException on any other error; EINVAL means this socket cannot be spliced
     */
    public long fromSocket(int socketFd, long max) {
        checkEmpty();
        long n = Native.LIBC.splice(socketFd, null, writeEnd, null, Math.min(max, capacity),
                SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0) {
            int errno = Native.lastErrno();
            if (errno == Errno.EAGAIN.value()) {
                return -1;
            }
            throw new NativeCallException("splice", errno, "from=socket fd=" + socketFd + " max=" + max);
        }
        held = n;
        return n;
    }

    /**
     * Writes all bytes held to {@code fd} at {@code position} (the file's offset is not used or moved).
     *
     * @throws NativeCallException if the file refuses; when nothing was written yet ({@link #held()} is
     *                             unchanged, typically EINVAL: this file system cannot splice) the bytes can
     *                             still be taken back with {@link #drain}
     */
    public void toFile(int fd, long position) {
        long pos = position;
        while (held > 0) {
            offset.pointer().putLong(0, pos);
            long n = Native.LIBC.splice(readEnd, null, fd, offset.pointer(), held, SPLICE_F_MOVE);
            int errno = n < 0 ? Native.lastErrno() : Errno.EIO.value(); // right after the call, same thread
            offset.keepAlive();
            if (n <= 0) {
                throw new NativeCallException("splice", errno, "to=file fd=" + fd + " position=" + pos
                        + " bytes_left=" + held);
            }
            held -= n;
            pos += n;
        }
    }

    /**
     * Reads all bytes held into the direct buffer {@code dst} at its position (which moves past them):
     * for when the file refused {@link #toFile}.
     *
     * @throws IllegalArgumentException if {@code dst} has less room than {@link #held()} or is a heap buffer
     */
    public void drain(ByteBuffer dst) {
        if (dst.remaining() < held) {
            throw new IllegalArgumentException("buffer room=" + dst.remaining() + " < bytes held=" + held);
        }
        long base = NativeBuffers.address(dst);
        while (held > 0) {
            long n = Native.LIBC.read(readEnd, Native.pointer(base + dst.position(), held), held);
            if (n <= 0) {
                throw new NativeCallException("read", n < 0 ? Native.lastErrno() : Errno.EIO.value(),
                        "from=pipe fd=" + readEnd + " bytes_left=" + held);
            }
            held -= n;
            dst.position(dst.position() + (int) n);
        }
    }

    private void checkEmpty() {
        if (closed) {
            throw new IllegalStateException("splice pipe is closed");
        }
        if (held > 0) {
            throw new IllegalStateException("splice pipe still holds bytes=" + held + ": write them out first");
        }
    }

    /** Closes both ends; idempotent. Bytes still held are dropped. */
    @Override
    public void close() {
        if (!closed) {
            closed = true;
            Native.LIBC.close(readEnd);
            Native.LIBC.close(writeEnd);
        }
    }
}
