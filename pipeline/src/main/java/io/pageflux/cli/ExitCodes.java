package io.pageflux.cli;

/** The exit codes of the {@code pageflux} command, as {@code --help} documents them. */
public final class ExitCodes {

    /** Everything worked (for {@code demo}: every check passed). */
    public static final int OK = 0;
    /** The dump (or the demo's check) failed after it had started: target exited, disk full, sink error. */
    public static final int FAILED = 1;
    /** Bad usage or input: unknown option, unknown or untraceable pid, unusable output, bad image file. */
    public static final int BAD_INPUT = 2;

    private ExitCodes() {
    }
}
