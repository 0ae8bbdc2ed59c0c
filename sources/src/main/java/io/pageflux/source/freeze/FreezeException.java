package io.pageflux.source.freeze;

import io.pageflux.source.PagefluxException;

/**
 * The target could not be frozen (or thawed). The target is left running: a freezer that fails undoes
 * whatever it had stopped before throwing. The message names the pid, the thread and what to do.
 */
public class FreezeException extends PagefluxException {

    private final int pid;

    public FreezeException(int pid, String message) {
        super(message);
        this.pid = pid;
    }

    public FreezeException(int pid, String message, Throwable cause) {
        super(message, cause);
        this.pid = pid;
    }

    public int pid() {
        return pid;
    }
}
