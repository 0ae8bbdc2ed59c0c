package io.pageflux.cli;

/**
 * A failure the CLI reports as one message and an exit code ({@link ExitCodes}), without a stack
 * trace: the message names the pid / path at fault and what to do.
 */
final class CliException extends RuntimeException {

    private final int exitCode;

    CliException(int exitCode, String message) {
        super(message);
        this.exitCode = exitCode;
    }

    CliException(int exitCode, String message, Throwable cause) {
        super(message, cause);
        this.exitCode = exitCode;
    }

    static CliException badInput(String message) {
        return new CliException(ExitCodes.BAD_INPUT, message);
    }

    static CliException badInput(String message, Throwable cause) {
        return new CliException(ExitCodes.BAD_INPUT, message, cause);
    }

    static CliException failed(String message, Throwable cause) {
        return new CliException(ExitCodes.FAILED, message, cause);
    }

    int exitCode() {
        return exitCode;
    }
}
