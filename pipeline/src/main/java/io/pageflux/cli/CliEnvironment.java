package io.pageflux.cli;

import io.pageflux.sink.PageSink;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Objects;
import java.util.function.UnaryOperator;

/**
 * What the CLI takes from its surroundings, so tests can run it in-process: whether stderr is a
 * terminal (progress bar or not), standard input (demo {@code --keep}), the progress interval,
 * and a hook that wraps every sink (tests slow it down to kill the target mid-dump).
 */
record CliEnvironment(boolean progressTerminal, InputStream stdin, Duration progressInterval,
                      UnaryOperator<PageSink> sinkDecorator) {

    CliEnvironment {
        Objects.requireNonNull(stdin, "stdin");
        Objects.requireNonNull(progressInterval, "progressInterval");
        Objects.requireNonNull(sinkDecorator, "sinkDecorator");
    }

    /** The real process: a progress bar only when both the console and stderr are terminals. */
    static CliEnvironment detect() {
        return new CliEnvironment(System.console() != null && stderrIsTerminal(), System.in,
                Duration.ofMillis(200), UnaryOperator.identity());
    }

    /** Not a terminal, empty stdin: what tests start from. */
    static CliEnvironment headless() {
        return new CliEnvironment(false, InputStream.nullInputStream(), Duration.ofMillis(200),
                UnaryOperator.identity());
    }

    CliEnvironment withSinkDecorator(UnaryOperator<PageSink> decorator) {
        return new CliEnvironment(progressTerminal, stdin, progressInterval, decorator);
    }

    CliEnvironment withStdin(InputStream in) {
        return new CliEnvironment(progressTerminal, in, progressInterval, sinkDecorator);
    }

    CliEnvironment withProgressTerminal(boolean terminal) {
        return new CliEnvironment(terminal, stdin, progressInterval, sinkDecorator);
    }

    /**
     * Java 17 cannot ask isatty(2) directly; on Linux fd 2 of a terminal links to a tty device.
     * Redirected to a file or pipe, the link names that instead.
     */
    private static boolean stderrIsTerminal() {
        try {
            String target = Files.readSymbolicLink(Path.of("/proc/self/fd/2")).toString();
            return target.startsWith("/dev/pts/") || target.startsWith("/dev/tty") || target.equals("/dev/console");
        } catch (Exception e) {
            return false;
        }
    }
}
