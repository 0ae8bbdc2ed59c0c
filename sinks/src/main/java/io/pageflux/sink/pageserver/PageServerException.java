package io.pageflux.sink.pageserver;

import io.pageflux.source.PagefluxException;

/**
 * A page-server session failed: the connection could not be made or was lost, or the other side
 * broke the protocol. The message names the server ({@code server=host:port}), the command in
 * flight and what to do. The receiving side never keeps anything complete from such a session.
 */
public class PageServerException extends PagefluxException {

    public PageServerException(String message) {
        super(message);
    }

    public PageServerException(String message, Throwable cause) {
        super(message, cause);
    }
}
