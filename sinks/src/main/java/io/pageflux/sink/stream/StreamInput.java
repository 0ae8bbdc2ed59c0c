package io.pageflux.sink.stream;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ReadableByteChannel;
import java.util.zip.CRC32C;

/** Buffered reading of a stream with the offset and a CRC32C of every byte consumed. */
final class StreamInput {

    private final ReadableByteChannel channel;
    private final String suffix;
    private final ByteBuffer buffer = ByteBuffer.allocateDirect(256 * 1024);
    private final CRC32C crc = new CRC32C();
    private long offset;
    private boolean eof;

    /** @param suffix appended to error messages (what it means for the output) */
    StreamInput(ReadableByteChannel channel, String suffix) {
        this.channel = channel;
        this.suffix = suffix;
        buffer.flip(); // empty
    }

    /** Bytes consumed so far = offset of the next byte. */
    long offset() {
        return offset;
    }

    /** CRC32C of every byte consumed so far. */
    int crc() {
        return (int) crc.getValue();
    }

    /** Whether the stream has ended (no byte left). */
    boolean atEnd() throws IOException {
        return !fill();
    }

    /**
     * The next {@code n} bytes as a little-endian heap buffer.
     *
     * @throws StreamFormatException ("truncated") if the stream ends first
     */
    ByteBuffer read(int n, String field) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n).order(ByteOrder.LITTLE_ENDIAN);
        readFully(b, field);
        return b.flip();
    }

    /** Fills {@code dst} from position to limit. */
    void readFully(ByteBuffer dst, String field) throws IOException {
        long start = offset;
        int wanted = dst.remaining();
        while (dst.hasRemaining()) {
            if (!fill()) {
                throw new StreamFormatException(offset, field, "truncated stream: offset=" + offset + " field=" + field
                        + ": the stream ended after " + (offset - start) + " of the " + wanted + " bytes of " + field
                        + " (started at offset " + start + ")" + suffix);
            }
            int n = Math.min(dst.remaining(), buffer.remaining());
            ByteBuffer part = buffer.duplicate().limit(buffer.position() + n);
            crc.update(part.duplicate());
            dst.put(part);
            buffer.position(buffer.position() + n);
            offset += n;
        }
    }

    /** Makes at least one byte available; false at the end of the stream. */
    private boolean fill() throws IOException {
        if (buffer.hasRemaining()) {
            return true;
        }
        if (eof) {
            return false;
        }
        buffer.clear();
        int n;
        do {
            n = channel.read(buffer);
        } while (n == 0);
        buffer.flip();
        if (n < 0) {
            eof = true;
            return false;
        }
        return true;
    }
}
