package io.pageflux.source;

/** The target process does not exist (any more): it exited, or the pid was never valid. */
public class ProcessGoneException extends PagefluxException {

    private final int pid;

    public ProcessGoneException(int pid, String detail) {
        super("process is gone: pid=" + pid + (detail.isEmpty() ? "" : " " + detail));
        this.pid = pid;
    }

    public ProcessGoneException(int pid, String detail, Throwable cause) {
        super("process is gone: pid=" + pid + (detail.isEmpty() ? "" : " " + detail), cause);
        this.pid = pid;
    }

    public int pid() {
        return pid;
    }
}
