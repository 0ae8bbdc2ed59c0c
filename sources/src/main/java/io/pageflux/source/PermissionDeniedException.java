package io.pageflux.source;

/**
 * The kernel refused access to the target's memory; the message says which capability or ptrace
 * setting is missing.
 */
public class PermissionDeniedException extends PagefluxException {

    private final int pid;

    public PermissionDeniedException(int pid, String detail) {
        super("permission denied: pid=" + pid + " " + detail);
        this.pid = pid;
    }

    public PermissionDeniedException(int pid, String detail, Throwable cause) {
        super("permission denied: pid=" + pid + " " + detail, cause);
        this.pid = pid;
    }

    public int pid() {
        return pid;
    }
}
