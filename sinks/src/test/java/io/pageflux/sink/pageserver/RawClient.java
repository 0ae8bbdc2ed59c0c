package io.pageflux.sink.pageserver;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;

/** A plain blocking TCP client that sends given bytes and collects everything the server answers. */
final class RawClient {

    private RawClient() {
    }

    /** Sends {@code bytes}, half-closes, and returns what the server sent until it closed. */
    static byte[] exchange(int port, byte[] bytes) throws IOException {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port), 5000);
            s.setSoTimeout(30_000);
            s.getOutputStream().write(bytes);
            s.getOutputStream().flush();
            s.shutdownOutput();
            return readAll(s.getInputStream());
        }
    }

    /** The bytes of {@code parts}, one after the other (a request stream built from headers and page bytes). */
    static byte[] concat(byte[]... parts) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] p : parts) {
            out.writeBytes(p);
        }
        return out.toByteArray();
    }

    /** A header's wire bytes. */
    static byte[] header(PageServerHeader h) {
        return h.toBytes().array();
    }

    static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[4096];
        try {
            for (int n; (n = in.read(buf)) >= 0; ) {
                out.write(buf, 0, n);
            }
        } catch (java.net.SocketException reset) {
            // a server that ends a bad session may reset instead of closing cleanly: keep what came
        }
        return out.toByteArray();
    }
}
