package io.pageflux.cli;

import io.pageflux.pipeline.incremental.Migration;
import io.pageflux.pipeline.incremental.ParentDump;
import io.pageflux.sink.pageserver.PageServerSinks;
import io.pageflux.source.DataSize;
import io.pageflux.source.freeze.Freezer;
import io.pageflux.source.incremental.ChangeDetection;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/** {@code pageflux migrate}: pre-dump until the changes are small, then a final frozen dump. */
@Command(name = "migrate",
        sortOptions = false,
        mixinStandardHelpOptions = true,
        header = "Iterative pre-copy: pre-dump while the process runs until few pages change, then a frozen final dump.",
        description = {
                "Each pre-dump freezes the target only while its pages are found and sends only the pages changed "
                        + "since the previous one. The loop stops when an iteration sends at most --threshold, when the "
                        + "changed set stops shrinking, or after --max-pre-dumps; then the final dump (CRIU's full-dump "
                        + "selection) runs with the target frozen from scan to commit. One line per iteration: pages "
                        + "sent, pages unchanged, frozen time, duration.",
                "With --out DIR the images go to DIR/pre-1, DIR/pre-2, ..., DIR/dump, each linked to the previous. "
                        + "The target is left running: stop it yourself once the images are safe."},
        footerHeading = "%nExamples:%n",
        footer = {
                "  pageflux migrate --pid 1234 --out /tmp/mig --verify",
                "  pageflux migrate --pid 1234 --to tcp://10.0.0.2:27027 --threshold 16M",
                ""},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {
                "0:the final dump is complete (and verified, with --verify)",
                "1:an iteration failed or the target exited (the completed iterations are named), or --verify "
                        + "found a difference",
                "2:bad usage or input"})
final class MigrateCommand implements Callable<Integer> {

    @ParentCommand
    PagefluxCli parent;

    @Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--pid", required = true, paramLabel = "PID", description = "The process to migrate.")
    int pid;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Output output;

    static final class Output {
        @Option(names = "--out", paramLabel = "DIR", description = "Images into DIR/pre-N and DIR/dump.")
        Path out;

        @Option(names = "--to", paramLabel = "tcp://HOST:PORT", description = "A page server; it must link each "
                + "session to the previous one (holes are relative to the previous iteration).")
        String to;
    }

    @Option(names = "--parent", paramLabel = "DIR", description = "Start from an earlier dump of this process.")
    Path parentDir;

    @Option(names = "--threshold", paramLabel = "SIZE", defaultValue = "4M", description = "Stop pre-dumping once an "
            + "iteration sends at most this much (default ${DEFAULT-VALUE}).")
    DataSize threshold;

    @Option(names = "--max-pre-dumps", paramLabel = "N", defaultValue = "8", description = "At most N pre-dumps "
            + "(default ${DEFAULT-VALUE}).")
    int maxPreDumps;

    @Option(names = "--change-detection", paramLabel = "auto|soft-dirty|digest", defaultValue = "auto",
            description = ChangeDetectionOption.HELP)
    String changeDetection;

    @Option(names = "--freezer", paramLabel = "ptrace|cgroup|cgroup:DIR", defaultValue = "ptrace",
            description = FreezeOptions.FREEZER_HELP)
    String freezer;

    @Option(names = "--verify", description = "Compare the final dump's chain with the frozen memory before thawing "
            + "(--out only).")
    boolean verify;

    @Option(names = "--force", description = "Replace non-empty iteration directories.")
    boolean force;

    @Option(names = "--no-direct-io", description = "Write pages files through the page cache instead of with "
            + "O_DIRECT (the default, which falls back by itself where the file system refuses it).")
    boolean noDirectIo;

    @Mixin
    BufferOptions buffers;


    @Override
    public Integer call() {
        buffers.check();
        if (maxPreDumps < 0) {
            throw CliException.badInput("--max-pre-dumps " + maxPreDumps + ": must be 0 or more");
        }
        ChangeDetection detection = ChangeDetectionOption.parse(changeDetection);
        ChangeDetectionOption.requireUsable(detection, pid);
        Migration migration = Migration.of(pid).changeDetection(detection);
        if (output.out != null) {
            OutputDirs.checkWritable(output.out, force);
            migration.toDirectory(output.out, force).directIo(!noDirectIo);
        } else {
            if (verify) {
                throw CliException.badInput("--verify needs local images (--out DIR)");
            }
            String uri = output.to;
            try {
                PageServerSinks.connect(uri);
            } catch (IllegalArgumentException e) {
                throw CliException.badInput("--to " + uri + ": " + e.getMessage(), e);
            }
            boolean initialParent = parentDir != null;
            migration.toSinks(n -> parent.env.sinkDecorator().apply(
                    PageServerSinks.connect(uri).askParent(n > 1 || initialParent)), uri);
        }
        DumpCommand.attach(pid);
        Freezer f = FreezeOptions.freezer(freezer, pid);
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        if (parentDir != null) {
            try {
                ParentDump p = ParentDump.open(parentDir, pid);
                p.fallback().ifPresent(reason -> {
                    err.println("pageflux: warning: " + reason);
                    err.flush();
                });
                migration.parent(p);
            } catch (RuntimeException e) {
                throw FreezeOptions.classify("migration of pid=" + pid, e, false);
            }
        }
        migration.freezer(f).maxPreDumps(maxPreDumps).thresholdPages(threshold.bytes() / 4096).budget(buffers.budget)
                .chunkSize(buffers.chunkSize).verify(verify).onIteration(it -> {
                    out.println(it.line() + " -> " + it.destination());
                    out.flush();
                });
        List<Migration.Iteration> done;
        try {
            done = migration.run();
        } catch (RuntimeException e) {
            throw FreezeOptions.classify("migration of pid=" + pid, e, true);
        }
        Migration.Iteration last = done.get(done.size() - 1);
        long sent = done.stream().mapToLong(i -> i.report().pagesSent()).sum();
        out.printf(Locale.ROOT, "migrated pid=%d in %d iterations: %d pages sent in total, final dump frozen %.1f ms%n",
                pid, done.size(), sent, last.report().frozen().toNanos() / 1e6);
        last.report().verify().ifPresent(v -> out.print(v.text()));
        out.flush();
        if (last.report().verify().isPresent() && !last.report().verify().get().ok()) {
            return ExitCodes.FAILED;
        }
        return ExitCodes.OK;
    }
}
