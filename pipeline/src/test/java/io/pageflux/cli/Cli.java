package io.pageflux.cli;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.SinkResult;
import io.pageflux.source.PageChunk;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import picocli.CommandLine;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/** Runs the CLI in-process (or in a child JVM) with captured stdout and stderr. */
final class Cli {

    /** The outcome of one invocation. */
    record Result(int exit, String out, String err) {
        @Override
        public String toString() {
            return "exit=" + exit + "\n--- stdout\n" + out + "--- stderr\n" + err;
        }
    }

    private Cli() {
    }

    static Result run(String... args) {
        return run(CliEnvironment.headless(), args);
    }

    static Result run(CliEnvironment env, String... args) {
        CommandLine cl = PagefluxCli.commandLine(env);
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        int exit = cl.execute(args);
        return new Result(exit, out.toString(), err.toString());
    }

    /**
     * Runs the CLI in a child JVM with the test class path, prefixed by {@code wrapper} (e.g.
     * {@code setpriv ...}), and returns its exit code and output.
     */
    static Result runInChildJvm(List<String> wrapper, String... args) throws IOException, InterruptedException {
        List<String> command = new ArrayList<>(wrapper);
        command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        command.add("-cp");
        command.add(System.getProperty("java.class.path"));
        command.add(PagefluxCli.class.getName());
        command.addAll(List.of(args));
        Path outFile = Files.createTempFile("pageflux-cli-out", ".txt");
        Path errFile = Files.createTempFile("pageflux-cli-err", ".txt");
        try {
            Process p = new ProcessBuilder(command).redirectOutput(outFile.toFile()).redirectError(errFile.toFile())
                    .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null"))).start();
            if (!p.waitFor(60, TimeUnit.SECONDS)) {
                p.destroyForcibly().waitFor();
                throw new AssertionError("child JVM did not finish: " + command);
            }
            return new Result(p.exitValue(), Files.readString(outFile, StandardCharsets.UTF_8),
                    Files.readString(errFile, StandardCharsets.UTF_8));
        } finally {
            Files.deleteIfExists(outFile);
            Files.deleteIfExists(errFile);
        }
    }

    /**
     * Wraps a sink so that every chunk is held for {@code delay} before the real sink gets it, and
     * runs {@code afterFirst} once the first chunk has arrived: a slow disk, with a hook to kill
     * the target at a known point of the dump.
     */
    static PageSink slow(PageSink inner, Duration delay, Runnable afterFirst) {
        AtomicBoolean first = new AtomicBoolean(true);
        return new PageSink() {
            @Override
            public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
                return inner.write(context, chunks.concatMap(c -> {
                    if (first.compareAndSet(true, false)) {
                        afterFirst.run();
                    }
                    return Mono.just(c).delayElement(delay);
                }, 1));
            }

            @Override
            public String describe() {
                return inner.describe();
            }
        };
    }
}
