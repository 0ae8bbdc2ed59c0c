package io.pageflux.sink.pageserver;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.nativeio.Descriptors;
import io.pageflux.nativeio.Errno;
import io.pageflux.nativeio.NativeBuffers;
import io.pageflux.nativeio.NativeCallException;
import io.pageflux.nativeio.SplicePipe;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The native splice bindings the page server uses, on a real loopback connection and a real file. */
class SplicePipeTest {

    @TempDir
    Path tmp;

    @Test
    void movesSocketBytesIntoAFileAtAnOffsetWithoutBlocking() throws Exception {
        byte[] data = new byte[300_000];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (i * 13 + (i >> 8));
        }
        Path file = tmp.resolve("pages.img");
        Files.write(file, new byte[100]); // the first 100 bytes stay
        try (ServerSocketChannel listener = ServerSocketChannel.open()
                .bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
             SocketChannel client = SocketChannel.open(listener.getLocalAddress());
             SocketChannel server = listener.accept();
             SplicePipe pipe = SplicePipe.open(1 << 20)) {
            server.configureBlocking(false);
            int socket = Descriptors.duplicateSocket((InetSocketAddress) server.getLocalAddress(),
                    (InetSocketAddress) server.getRemoteAddress());
            int fd = Descriptors.openForWriting(file);
            try {
                assertTrue(socket >= 0, "the server side's descriptor is found");
                assertTrue(pipe.capacity() >= 64 << 10, "capacity=" + pipe.capacity());
                assertEquals(-1, pipe.fromSocket(socket, 1 << 20), "nothing sent yet: EAGAIN, not a wait");
                client.write(ByteBuffer.wrap(data));
                long at = 100;
                while (at < 100 + data.length) {
                    long n = pipe.fromSocket(socket, 100 + data.length - at);
                    if (n < 0) {
                        Thread.sleep(1);
                        continue;
                    }
                    assertEquals(n, pipe.held());
                    pipe.toFile(fd, at);
                    assertEquals(0, pipe.held());
                    at += n;
                }
                byte[] written = Files.readAllBytes(file);
                assertEquals(100 + data.length, written.length);
                assertArrayEquals(data, Arrays.copyOfRange(written, 100, written.length));

                // bytes held can be taken back into a buffer (a file system that refuses splice)
                client.write(ByteBuffer.wrap(data, 0, 5000));
                long n;
                while ((n = pipe.fromSocket(socket, 5000)) < 0) {
                    Thread.sleep(1);
                }
                assertThrows(IllegalStateException.class, () -> pipe.fromSocket(socket, 1), "bytes still held");
                ByteBuffer back = ByteBuffer.allocateDirect(8192);
                pipe.drain(back);
                assertEquals(n, back.position());
                assertArrayEquals(Arrays.copyOf(data, (int) n), Arrays.copyOf(toArray(back.flip()), (int) n));

                client.shutdownOutput();
                long end;
                while ((end = pipe.fromSocket(socket, 1 << 20)) != 0) {
                    assertTrue(end < 0 || end == 5000 - n, "the rest, then the end: " + end);
                    if (end > 0) {
                        pipe.toFile(fd, 0);
                    } else {
                        Thread.sleep(1);
                    }
                }
            } finally {
                Descriptors.close(socket);
                Descriptors.close(fd);
            }
        }
    }

    @Test
    void drainWritesAtThePositionOfABufferThatIsNotAtZero() throws Exception {
        byte[] data = new byte[4000];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (i * 7 + 1);
        }
        ByteBuffer whole = ByteBuffer.allocateDirect(16384); // the slice's neighbour bytes show a stray write
        ByteBuffer dst = whole.slice(0, 8192).position(3000);
        assertEquals(NativeBuffers.address(whole), NativeBuffers.address(dst), "index 0, not the position");
        try (ServerSocketChannel listener = ServerSocketChannel.open()
                .bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
             SocketChannel client = SocketChannel.open(listener.getLocalAddress());
             SocketChannel server = listener.accept();
             SplicePipe pipe = SplicePipe.open(1 << 20)) {
            server.configureBlocking(false);
            int socket = Descriptors.duplicateSocket((InetSocketAddress) server.getLocalAddress(),
                    (InetSocketAddress) server.getRemoteAddress());
            try {
                assertTrue(socket >= 0, "the server side's descriptor is found");
                client.write(ByteBuffer.wrap(data));
                int at = 0;
                while (at < data.length) {
                    long n = pipe.fromSocket(socket, data.length - at);
                    if (n < 0) {
                        Thread.sleep(1);
                        continue;
                    }
                    pipe.drain(dst);
                    at += (int) n;
                }
            } finally {
                Descriptors.close(socket);
            }
        }
        assertEquals(7000, dst.position());
        byte[] got = new byte[16384];
        whole.get(0, got);
        assertArrayEquals(new byte[3000], Arrays.copyOfRange(got, 0, 3000), "nothing before the position");
        assertArrayEquals(data, Arrays.copyOfRange(got, 3000, 7000));
        assertArrayEquals(new byte[16384 - 7000], Arrays.copyOfRange(got, 7000, 16384), "nothing past the bytes");
    }

    @Test
    void errorsNameTheCallAndErrno() {
        try (SplicePipe pipe = SplicePipe.open(1 << 20)) {
            NativeCallException e = assertThrows(NativeCallException.class, () -> pipe.fromSocket(-1, 10));
            assertEquals(Errno.EBADF, e.errno());
            assertEquals("splice failed: errno=EBADF from=socket fd=-1 max=10", e.getMessage());
        }
        NativeCallException e = assertThrows(NativeCallException.class,
                () -> Descriptors.openForWriting(tmp.resolve("missing")));
        assertEquals(Errno.ENOENT, e.errno());
        assertTrue(e.getMessage().contains("file=" + tmp.resolve("missing")), e.getMessage());
    }

    private static byte[] toArray(ByteBuffer b) {
        byte[] a = new byte[b.remaining()];
        b.get(a);
        return a;
    }
}
