package io.pageflux.sink.stream;

import io.pageflux.source.PagefluxException;

/** Writing the stream failed (the pipe was closed, the disk filled up); the message says at which offset. */
public class StreamWriteException extends PagefluxException {

    private final long offset;

    public StreamWriteException(long offset, String message, Throwable cause) {
        super(message, cause);
        this.offset = offset;
    }

    /** Stream bytes written before the failure. */
    public long offset() {
        return offset;
    }
}
