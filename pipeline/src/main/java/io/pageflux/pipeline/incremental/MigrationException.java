package io.pageflux.pipeline.incremental;

import io.pageflux.source.PagefluxException;

/** A migration stopped before its final dump; the message says which iterations are complete. */
public class MigrationException extends PagefluxException {

    private final int pid;

    public MigrationException(int pid, String message, Throwable cause) {
        super(message, cause);
        this.pid = pid;
    }

    public int pid() {
        return pid;
    }
}
