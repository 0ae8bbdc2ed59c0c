package io.pageflux.sink.pageserver;

import java.nio.ByteBuffer;

/**
 * Splits a client-to-server byte stream into headers and the page data that follows them, fed
 * in pieces of any size as they arrive. It keeps only the 32 bytes of a header split across
 * pieces; page data is handed on as views of the caller's buffers, never accumulated, so a
 * receiver's memory does not grow with the size of a run.
 */
final class WireDecoder {

    /** What the decoder found. Exceptions thrown here propagate out of {@link #feed}. */
    interface Listener {

        /** A complete header; {@link #payloadRemaining()} already tells how many data bytes follow. */
        void onHeader(PageServerHeader header);

        /**
         * The next {@code part.remaining()} bytes of the data following the last header. The view is
         * valid only during the call: copy or write it out, don't keep it.
         */
        void onPayload(ByteBuffer part);
    }

    private final Listener listener;
    private final int pageSize;
    private final ByteBuffer header = ByteBuffer.allocate(PageServerWire.HEADER_BYTES);
    private long payloadRemaining;
    private long headers;
    private long bytes;

    WireDecoder(Listener listener, int pageSize) {
        this.listener = listener;
        this.pageSize = pageSize;
    }

    /** Consumes all of {@code in} (position advanced to its limit). */
    void feed(ByteBuffer in) {
        while (in.hasRemaining()) {
            if (payloadRemaining > 0) {
                int n = (int) Math.min(in.remaining(), payloadRemaining);
                ByteBuffer part = in.slice().limit(n);
                in.position(in.position() + n);
                payloadRemaining -= n;
                bytes += n;
                listener.onPayload(part);
                continue;
            }
            int n = Math.min(in.remaining(), header.remaining());
            header.put(in.slice().limit(n));
            in.position(in.position() + n);
            bytes += n;
            if (!header.hasRemaining()) {
                PageServerHeader h = PageServerWire.decode(header, 0);
                header.clear();
                headers++;
                payloadRemaining = h.payloadBytes(pageSize);
                listener.onHeader(h);
            }
        }
    }

    /**
     * Counts {@code n} bytes of the current payload as consumed without seeing them: the receiver moved
     * them from the socket to their file itself (splice).
     */
    void payloadElsewhere(long n) {
        if (n <= 0 || n > payloadRemaining) {
            throw new IllegalStateException("bytes=" + n + " but payload_remaining=" + payloadRemaining);
        }
        payloadRemaining -= n;
        bytes += n;
    }

    /** True between messages: no partial header and no page data still expected. */
    boolean atBoundary() {
        return header.position() == 0 && payloadRemaining == 0;
    }

    /** Bytes of a header received so far (0..31) when the stream stopped inside one. */
    int partialHeaderBytes() {
        return header.position();
    }

    /** Data bytes the last header announced that have not arrived yet. */
    long payloadRemaining() {
        return payloadRemaining;
    }

    long headersDecoded() {
        return headers;
    }

    long bytesConsumed() {
        return bytes;
    }
}
