package io.pageflux.source;

/**
 * Base of pageflux's own exceptions. Messages state what happened as {@code key=value} facts
 * (pid, address, file, errno) and what to do about it.
 */
public class PagefluxException extends RuntimeException {

    public PagefluxException(String message) {
        super(message);
    }

    public PagefluxException(String message, Throwable cause) {
        super(message, cause);
    }
}
