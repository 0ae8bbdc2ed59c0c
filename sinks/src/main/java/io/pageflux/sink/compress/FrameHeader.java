package io.pageflux.sink.compress;

import static io.pageflux.sink.compress.CompressedPagesFormat.FRAME_HEADER_BYTES;
import static io.pageflux.sink.compress.CompressedPagesFormat.FRAME_MAGIC;
import static io.pageflux.sink.compress.CompressedPagesFormat.FR_CODEC;
import static io.pageflux.sink.compress.CompressedPagesFormat.FR_HEADER_CRC;
import static io.pageflux.sink.compress.CompressedPagesFormat.FR_MAGIC;
import static io.pageflux.sink.compress.CompressedPagesFormat.FR_PAYLOAD_CRC;
import static io.pageflux.sink.compress.CompressedPagesFormat.FR_RAW_LENGTH;
import static io.pageflux.sink.compress.CompressedPagesFormat.FR_RAW_XXHASH64;
import static io.pageflux.sink.compress.CompressedPagesFormat.FR_STORED_LENGTH;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One frame's 32-byte header (see {@link CompressedPagesFormat}), shared by compressed pages files
 * and the single-stream format.
 *
 * @param codec        how the payload is stored ({@link Codec.Algorithm#NONE}: as is)
 * @param rawLength    bytes after decompressing (whole pages)
 * @param storedLength bytes of the payload that follows the header
 * @param rawXxhash64  xxHash64 (seed 0) of the raw bytes
 * @param payloadCrc   CRC32C of the stored payload
 */
public record FrameHeader(Codec.Algorithm codec, int rawLength, int storedLength, long rawXxhash64, int payloadCrc) {

    /** Writes the 32 header bytes at {@code dst}'s position and advances it. */
    public void writeTo(ByteBuffer dst) {
        ByteBuffer b = dst.slice().order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(FR_MAGIC, FRAME_MAGIC);
        b.put(FR_CODEC, (byte) codec.id());
        b.put(FR_CODEC + 1, (byte) 0);
        b.putShort(FR_CODEC + 2, (short) 0);
        b.putInt(FR_RAW_LENGTH, rawLength);
        b.putInt(FR_STORED_LENGTH, storedLength);
        b.putLong(FR_RAW_XXHASH64, rawXxhash64);
        b.putInt(FR_PAYLOAD_CRC, payloadCrc);
        b.putInt(FR_HEADER_CRC, Checksums.crc32c(b, 0, FR_HEADER_CRC));
        dst.position(dst.position() + FRAME_HEADER_BYTES);
    }

    /** The header as a new 32-byte heap buffer (position 0). */
    public ByteBuffer toBuffer() {
        ByteBuffer b = ByteBuffer.allocate(FRAME_HEADER_BYTES);
        writeTo(b);
        return b.flip();
    }

    /**
     * Decodes the 32 bytes at {@code src}'s position (position unchanged).
     *
     * @param maxRawLength the largest raw length the container allows
     * @throws Frames.FrameCheckException naming the field at fault, e.g. {@code magic}; the
     *                                    caller adds file, frame and offset
     */
    public static FrameHeader read(ByteBuffer src, int maxRawLength) {
        ByteBuffer b = src.slice().order(ByteOrder.LITTLE_ENDIAN);
        if (b.remaining() < FRAME_HEADER_BYTES) {
            throw new Frames.FrameCheckException("header", "only " + b.remaining() + " of " + FRAME_HEADER_BYTES
                    + " bytes (truncated)");
        }
        int magic = b.getInt(FR_MAGIC);
        if (magic != FRAME_MAGIC) {
            throw new Frames.FrameCheckException("magic", "found " + Checksums.hex(magic) + " expected "
                    + Checksums.hex(FRAME_MAGIC) + " ('PFXF')");
        }
        int crc = Checksums.crc32c(b, 0, FR_HEADER_CRC);
        if (crc != b.getInt(FR_HEADER_CRC)) {
            throw new Frames.FrameCheckException("header_crc", "header checksum mismatch (stored "
                    + Checksums.hex(b.getInt(FR_HEADER_CRC)) + ", computed " + Checksums.hex(crc) + ")");
        }
        Codec.Algorithm codec;
        try {
            codec = Codec.Algorithm.ofId(b.get(FR_CODEC) & 0xff);
        } catch (IllegalArgumentException e) {
            throw new Frames.FrameCheckException("codec", "" + e.getMessage());
        }
        int raw = b.getInt(FR_RAW_LENGTH);
        int stored = b.getInt(FR_STORED_LENGTH);
        if (raw <= 0 || raw > maxRawLength) {
            throw new Frames.FrameCheckException("raw_length", "" + Integer.toUnsignedString(raw)
                    + " is outside 1.." + maxRawLength);
        }
        // a compressed payload is only kept when smaller than the raw bytes
        if (stored <= 0 || stored > raw || (codec == Codec.Algorithm.NONE && stored != raw)) {
            throw new Frames.FrameCheckException("stored_length", "" + Integer.toUnsignedString(stored)
                    + " does not fit raw_length=" + raw + " codec=" + codec.label());
        }
        return new FrameHeader(codec, raw, stored, b.getLong(FR_RAW_XXHASH64), b.getInt(FR_PAYLOAD_CRC));
    }
}
