package io.pageflux.nativeio;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.nio.file.DirectoryIteratorException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import jnr.ffi.Pointer;

/**
 * File descriptors for native calls on what Java opened: the JDK does not tell a channel's descriptor,
 * so a TCP connection's is found by its addresses, and a file is opened a second time.
 * Descriptors returned here are this process's own (close-on-exec); close them with {@link #close}.
 */
public final class Descriptors {

    static final int O_WRONLY = 1;
    static final int F_DUPFD_CLOEXEC = 1030;
    private static final int AF_INET = 2;
    private static final int AF_INET6 = 10;

    private Descriptors() {
    }

    /**
     * A duplicate of this process's descriptor of the TCP connection from {@code local} to {@code remote}
     * (as {@code SocketChannel.getLocalAddress()/getRemoteAddress()} tell them), found by comparing them
     * with {@code getsockname}/{@code getpeername} of the sockets in {@code /proc/self/fd}. The duplicate
     * shares the connection (and its non-blocking mode) and stays valid until closed, even if the
     * channel is closed meanwhile — but the peer sees the connection end only when both are closed.
     *
     * @return the duplicate, or -1 when no descriptor matches (e.g. the peer reset the connection: the
     *         socket no longer has a peer address)
     * @throws IOException         if /proc/self/fd cannot be listed (not mounted, EMFILE for the listing's own
     *                             descriptor...); the message names the directory and the cause
     * @throws NativeCallException if the matching descriptor cannot be duplicated (EMFILE)
     */
    public static int duplicateSocket(InetSocketAddress local, InetSocketAddress remote) throws IOException {
        NativeBlock addrBlock = new NativeBlock(128);
        NativeBlock lenBlock = new NativeBlock(4);
        Pointer addr = addrBlock.pointer();
        Pointer len = lenBlock.pointer();
        try (DirectoryStream<Path> fds = Files.newDirectoryStream(Path.of("/proc/self/fd"))) {
            for (Path p : fds) {
                int fd;
                try {
                    fd = Integer.parseInt(p.getFileName().toString());
                    if (!Files.readSymbolicLink(p).toString().startsWith("socket:")) {
                        continue;
                    }
                } catch (NumberFormatException | IOException e) {
                    continue; // closed meanwhile (or the directory stream's own descriptor)
                }
                if (!matches(fd, local, remote, addr, len)) {
                    continue;
                }
                int dup = Native.LIBC.fcntl(fd, F_DUPFD_CLOEXEC, 0);
                if (dup < 0) {
                    throw new NativeCallException("fcntl", Native.lastErrno(), "cmd=F_DUPFD_CLOEXEC fd=" + fd);
                }
                // fd may have been closed and reused between the match and the dup: check the duplicate itself
                if (matches(dup, local, remote, addr, len)) {
                    return dup;
                }
                Native.LIBC.close(dup);
            }
        } catch (IOException e) {
            throw new IOException("cannot list dir=/proc/self/fd: cause=" + e, e);
        } catch (DirectoryIteratorException e) {
            // an I/O error in the middle of the listing, thrown unchecked by the iterator
            throw new IOException("cannot list dir=/proc/self/fd: cause=" + e.getCause(), e.getCause());
        } finally {
            // the kernel wrote the addresses into these blocks: they stay allocated until the search ends
            addrBlock.keepAlive();
            lenBlock.keepAlive();
        }
        return -1;
    }

    private static boolean matches(int fd, InetSocketAddress local, InetSocketAddress remote, Pointer addr,
                                   Pointer len) {
        len.putInt(0, 128);
        if (Native.LIBC.getsockname(fd, addr, len) != 0 || !equal(addr, local)) {
            return false;
        }
        len.putInt(0, 128);
        return Native.LIBC.getpeername(fd, addr, len) == 0 && equal(addr, remote);
    }

    /** Whether the native sockaddr equals {@code a}; an IPv4-mapped IPv6 address equals its IPv4 address. */
    private static boolean equal(Pointer sa, InetSocketAddress a) {
        int family = sa.getShort(0) & 0xffff;
        int port = ((sa.getByte(2) & 0xff) << 8) | (sa.getByte(3) & 0xff);
        byte[] ip;
        if (family == AF_INET) {
            ip = new byte[4];
            sa.get(4, ip, 0, 4);
        } else if (family == AF_INET6) {
            ip = new byte[16];
            sa.get(8, ip, 0, 16);
        } else {
            return false;
        }
        try {
            // getByAddress turns an IPv4-mapped address into an Inet4Address; the scope id is not compared
            InetAddress ia = InetAddress.getByAddress(ip);
            return port == a.getPort() && ia.equals(a.getAddress());
        } catch (UnknownHostException e) {
            return false;
        }
    }

    /**
     * Opens an existing file for writing at explicit offsets (the file's own offset is never used).
     *
     * @throws NativeCallException naming the file if it cannot be opened
     */
    public static int openForWriting(Path file) {
        int fd = Native.LIBC.open(file.toString(), O_WRONLY | SplicePipe.O_CLOEXEC);
        if (fd < 0) {
            throw new NativeCallException("open", Native.lastErrno(), "file=" + file + " flags=O_WRONLY");
        }
        return fd;
    }

    /** Closes a descriptor from this class; -1 is ignored. */
    public static void close(int fd) {
        if (fd >= 0) {
            Native.LIBC.close(fd);
        }
    }
}
