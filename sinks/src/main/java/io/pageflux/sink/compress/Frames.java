package io.pageflux.sink.compress;

import java.nio.ByteBuffer;

/**
 * Encoding and checking of single frames, shared by the pages-file and stream formats. Not
 * thread-safe: one instance per thread (it holds a compressor and decompressors).
 */
public final class Frames implements AutoCloseable {

    private final Codec codec;
    private Codec.Compressor compressor;
    private final Codec.Decompressor[] decompressors = new Codec.Decompressor[Codec.Algorithm.values().length];

    /** @param codec what {@link #encode} compresses with; decoding accepts any codec */
    public Frames(Codec codec) {
        this.codec = codec;
    }

    /**
     * Compresses {@code raw} (position..limit) into {@code out} at its position, falling back to
     * storing the bytes as they are when compression does not make them smaller. Advances
     * {@code out}'s position by the payload written.
     *
     * @throws IllegalArgumentException if {@code out} has less room than {@code raw.remaining()}
     */
    public FrameHeader encode(ByteBuffer raw, ByteBuffer out) {
        int rawLength = raw.remaining();
        if (out.remaining() < rawLength) {
            throw new IllegalArgumentException("output has " + out.remaining() + " bytes free, a frame needs up to "
                    + rawLength);
        }
        long hash = Checksums.xxhash64(raw);
        int start = out.position();
        int n = -1;
        Codec.Algorithm algorithm = codec.algorithm();
        if (algorithm != Codec.Algorithm.NONE) {
            if (compressor == null) {
                compressor = codec.newCompressor();
            }
            // only accept a result strictly smaller than the raw bytes: else store them
            n = compressor.compress(raw, out.duplicate().limit(start + rawLength - 1));
        }
        if (n < 0) {
            algorithm = Codec.Algorithm.NONE;
            out.duplicate().put(raw.duplicate());
            n = rawLength;
        }
        int crc = Checksums.crc32c(out.duplicate().limit(start + n).position(start));
        out.position(start + n);
        return new FrameHeader(algorithm, rawLength, n, hash, crc);
    }

    /**
     * Checks {@code payload} (position..limit, exactly {@code header.storedLength()} bytes) and
     * decompresses it into {@code raw} (position..position + rawLength), verifying the raw bytes'
     * checksum. Positions are unchanged.
     *
     * @throws FrameCheckException naming what failed ({@code payload_crc}, {@code payload},
     *                             {@code raw_xxhash64})
     */
    public void decode(FrameHeader header, ByteBuffer payload, ByteBuffer raw) {
        if (payload.remaining() != header.storedLength()) {
            throw new FrameCheckException("stored_length", "payload is " + payload.remaining() + " bytes, header says "
                    + header.storedLength());
        }
        int crc = Checksums.crc32c(payload);
        if (crc != header.payloadCrc()) {
            throw new FrameCheckException("payload_crc", "checksum mismatch in the stored payload (stored "
                    + Checksums.hex(header.payloadCrc()) + ", computed " + Checksums.hex(crc) + ")");
        }
        ByteBuffer target = raw.duplicate().limit(raw.position() + header.rawLength());
        int index = header.codec().ordinal();
        if (decompressors[index] == null) {
            decompressors[index] = Codec.newDecompressor(header.codec());
        }
        try {
            decompressors[index].decompress(payload, target);
        } catch (Codec.CorruptPayloadException e) {
            throw new FrameCheckException("payload", header.codec().label() + " could not decompress it: "
                    + e.getMessage());
        }
        long hash = Checksums.xxhash64(target);
        if (hash != header.rawXxhash64()) {
            throw new FrameCheckException("raw_xxhash64", "checksum mismatch in the decompressed bytes (stored "
                    + Checksums.hex(header.rawXxhash64()) + ", computed " + Checksums.hex(hash) + ")");
        }
    }

    @Override
    public void close() {
        if (compressor != null) {
            compressor.close();
            compressor = null;
        }
        for (int i = 0; i < decompressors.length; i++) {
            if (decompressors[i] != null) {
                decompressors[i].close();
                decompressors[i] = null;
            }
        }
    }

    /** A frame failed a check; the caller adds where (file, frame number, offset). */
    public static final class FrameCheckException extends RuntimeException {
        private final String field;
        private final String problem;

        FrameCheckException(String field, String problem) {
            super("field=" + field + ": " + problem);
            this.field = field;
            this.problem = problem;
        }

        /** The header or payload field that failed, e.g. {@code payload_crc}. */
        public String field() {
            return field;
        }

        /** What is wrong, without the field. */
        public String problem() {
            return problem;
        }
    }
}
