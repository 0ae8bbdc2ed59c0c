package io.pageflux.sink.stream;

import io.pageflux.source.PagefluxException;

/**
 * A stream is not a complete, intact pageflux stream: truncated, corrupted (a checksum failed),
 * or inconsistent. Names the byte offset, the record and the field at fault; nothing was
 * committed.
 */
public class StreamFormatException extends PagefluxException {

    private final long offset;
    private final String field;

    public StreamFormatException(long offset, String field, String message) {
        super(message);
        this.offset = offset;
        this.field = field;
    }

    /** Byte offset in the stream where the fault was found. */
    public long offset() {
        return offset;
    }

    /** Which record/field, e.g. {@code frame#3.payload_crc}, {@code trailer.crc}, {@code header.magic}. */
    public String field() {
        return field;
    }
}
