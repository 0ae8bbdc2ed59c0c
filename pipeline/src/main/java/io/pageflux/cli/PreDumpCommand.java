package io.pageflux.cli;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.pageflux.pipeline.incremental.ChangeDetectionReport;
import io.pageflux.pipeline.incremental.IncrementalDump;
import io.pageflux.pipeline.incremental.IncrementalReport;
import io.pageflux.pipeline.incremental.ParentDump;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.criu.CriuImageOptions;
import io.pageflux.sink.pageserver.PageServerSinks;
import io.pageflux.source.freeze.FreezeMode;
import io.pageflux.source.freeze.FreezeRecord;
import io.pageflux.source.freeze.Freezer;
import io.pageflux.source.incremental.ChangeDetection;
import io.pageflux.source.incremental.PageDigests;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/** {@code pageflux pre-dump}: one iteration of an incremental dump, frozen only as long as needed. */
@Command(name = "pre-dump",
        sortOptions = false,
        mixinStandardHelpOptions = true,
        header = "Pre-dump a running process, frozen only while its pages are found; only changed pages with --parent.",
        description = {
                "Freeze the target (ptrace: every thread), find its regions and pages, thaw it, then read the pages "
                        + "while it runs (--mode pre-dump, the default). --mode dump keeps it frozen until the images "
                        + "are written: a consistent snapshot.",
                "With --parent, pages unchanged since that dump are written as PE_PARENT holes and the parent is "
                        + "linked (relative 'parent' symlink). Unchanged pages are found with the kernel's soft-dirty "
                        + "bits where it has them (cleared while frozen; clean pages are not even read), otherwise with "
                        + "a 64-bit digest per page kept next to each dump (pageflux-digests.bin); see "
                        + "--change-detection."},
        footerHeading = "%nExamples:%n",
        footer = {
                "  pageflux pre-dump --pid 1234 --out /tmp/pd1",
                "  pageflux pre-dump --pid 1234 --out /tmp/pd2 --parent /tmp/pd1",
                "  pageflux pre-dump --pid 1234 --out /tmp/d --parent /tmp/pd2 --mode dump --full --verify",
                "  pageflux pre-dump --pid 1234 --to tcp://10.0.0.2:27027 --parent /tmp/pd1",
                ""},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {
                "0:the images are complete (and verified, with --verify)",
                "1:the dump failed after it had started, or --verify found a difference",
                "2:bad usage or input (pid, debugger attached, parent, permissions, output directory)"})
final class PreDumpCommand implements Callable<Integer> {

    @ParentCommand
    PagefluxCli parent;

    @Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--pid", required = true, paramLabel = "PID", description = "The process to pre-dump.")
    int pid;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Output output;

    static final class Output {
        @Option(names = "--out", paramLabel = "DIR", description = "Write CRIU images into DIR (created).")
        Path out;

        @Option(names = "--to", paramLabel = "URI", description = "dir:PATH, or tcp://HOST:PORT (a page server; it "
                + "must hold the parent images for the holes).")
        String to;
    }

    @Option(names = "--parent", paramLabel = "DIR", description = "An earlier dump of this process: unchanged pages "
            + "become holes against it.")
    Path parentDir;

    @Option(names = "--state", paramLabel = "DIR", description = "With --to tcp://: the page digests of the previous "
            + "pre-dump to this server (the parent, if DIR has them), replaced by this pre-dump's when it succeeds.")
    Path stateDir;

    /** In a --state directory while a pre-dump runs: its digests are not those of the server's newest session. */
    static final String STATE_PENDING = "pageflux-state.pending";

    @Option(names = "--mode", paramLabel = "pre-dump|dump", defaultValue = "pre-dump",
            description = "Frozen for the scan only (pre-dump, default) or until the images are written (dump).")
    String mode;

    @Option(names = "--change-detection", paramLabel = "auto|soft-dirty|digest", defaultValue = "auto",
            description = ChangeDetectionOption.HELP)
    String changeDetection;

    @Option(names = "--full", description = "CRIU's full-dump selection (incl. PROT_NONE regions) and inventory: "
            + "the last dump of a chain.")
    boolean full;

    @Option(names = "--freezer", paramLabel = "ptrace|cgroup|cgroup:DIR", defaultValue = "ptrace",
            description = FreezeOptions.FREEZER_HELP)
    String freezer;

    @Option(names = "--verify", description = "With --mode dump: compare the images (parents resolved) with the "
            + "frozen memory before thawing.")
    boolean verify;

    @Option(names = "--force", description = "Replace the contents of a non-empty output directory.")
    boolean force;

    @Option(names = "--no-direct-io", description = "Write pages files through the page cache instead of with "
            + "O_DIRECT (the default, which falls back by itself where the file system refuses it).")
    boolean noDirectIo;

    @Mixin
    BufferOptions buffers;


    @Option(names = "--json", description = "Print the report as JSON on stdout.")
    boolean json;

    @Override
    public Integer call() {
        FreezeMode freezeMode;
        try {
            freezeMode = FreezeMode.fromCli(mode);
        } catch (IllegalArgumentException e) {
            throw CliException.badInput("--mode " + mode + ": " + e.getMessage(), e);
        }
        ChangeDetection detection = ChangeDetectionOption.parse(changeDetection);
        if (verify && freezeMode != FreezeMode.DUMP) {
            throw CliException.badInput("--verify needs --mode dump: a target that runs while it is read cannot equal "
                    + "its images; verify later with: pageflux verify DIR --pid " + pid);
        }
        buffers.check();
        ChangeDetectionOption.requireUsable(detection, pid, freezeMode);
        Path dir = null;
        PageSink sink;
        boolean stateParent = false;
        if (output.out != null || output.to.startsWith("dir:")) {
            dir = output.out != null ? output.out : Destination.parse(output.to).dir();
            if (stateDir != null) {
                throw CliException.badInput("--state " + stateDir + " is for --to tcp:// only: a local dump keeps its"
                        + " digests in its own directory " + dir);
            }
            OutputDirs.checkWritable(dir, force);
            sink = PageSinks.criuImages(dir, CriuImageOptions.defaults().withForce(force).withDirectIo(!noDirectIo));
        } else if (output.to.startsWith("tcp:")) {
            if (verify) {
                throw CliException.badInput("--verify needs local images (--out DIR)");
            }
            if (stateDir != null && parentDir != null) {
                throw CliException.badInput("--state " + stateDir + " --parent " + parentDir + ": with --state the"
                        + " state directory is the parent (the previous pre-dump to this server); drop --parent");
            }
            stateParent = stateDir != null && Files.exists(stateDir.resolve(PageDigests.FILE_NAME))
                    && !Files.exists(stateDir.resolve(STATE_PENDING));
            try {
                sink = PageServerSinks.connect(output.to).askParent(parentDir != null || stateParent);
            } catch (IllegalArgumentException e) {
                throw CliException.badInput("--to " + output.to + ": " + e.getMessage(), e);
            }
        } else {
            throw CliException.badInput("--to " + output.to + ": use dir:PATH or tcp://HOST:PORT");
        }
        DumpCommand.attach(pid);
        Freezer f = FreezeOptions.freezer(freezer, pid);
        ParentDump parentDump;
        try {
            parentDump = stateParent ? ParentDump.fromState(stateDir, pid)
                    : parentDir == null ? null : ParentDump.open(parentDir, pid);
        } catch (RuntimeException e) {
            throw FreezeOptions.classify("pre-dump of pid=" + pid, e, false);
        }
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        if (stateDir != null && Files.exists(stateDir.resolve(STATE_PENDING))) {
            err.println("pageflux: warning: state=" + stateDir + " belongs to a pre-dump that did not finish (the server"
                    + " may hold a session these digests do not describe): every page is written this time");
            err.flush();
        }
        if (parentDump != null && parentDump.fallback().isPresent()) {
            err.println("pageflux: warning: " + parentDump.fallback().get());
            err.flush();
        }
        IncrementalDump dump = IncrementalDump.of(pid).freezer(f).mode(freezeMode).preDump(!full).parent(parentDump)
                .to(parent.env.sinkDecorator().apply(sink)).budget(buffers.budget).chunkSize(buffers.chunkSize)
                .verifyFrozen(verify).changeDetection(detection);
        if (dir != null) {
            dump = dump.digestsDir(dir);
        } else if (stateDir != null) {
            try {
                // marked pending until the new digests are in place: a pre-dump that dies after the server
                // committed its session would otherwise leave digests of an older session as the parent
                Files.createDirectories(stateDir);
                Files.writeString(stateDir.resolve(STATE_PENDING), "pre-dump of pid=" + pid + " to " + output.to
                        + " started; this file goes when its digests are written\n");
            } catch (IOException e) {
                throw CliException.badInput("--state " + stateDir + ": cannot write in it: " + e.getMessage(), e);
            }
            dump = dump.digestsDir(stateDir);
        }
        ProgressBar bar = null;
        if (parent.env.progressTerminal()) {
            bar = new ProgressBar(err);
            dump = dump.progress(parent.env.progressInterval(), bar);
        }
        IncrementalReport report;
        try {
            report = dump.run().block();
        } catch (RuntimeException e) {
            if (bar != null) {
                bar.close();
            }
            throw FreezeOptions.classify("pre-dump of pid=" + pid, e, true);
        }
        if (stateDir != null && report.digestsFile().isPresent()) {
            try {
                Files.delete(stateDir.resolve(STATE_PENDING));
            } catch (IOException e) {
                err.println("pageflux: warning: cannot remove " + stateDir.resolve(STATE_PENDING) + " (" + e.getMessage()
                        + "): the next pre-dump with this state writes every page");
                err.flush();
            }
        }
        if (json) {
            out.println(json(report).toPrettyString());
        } else {
            out.print(text(report));
        }
        out.flush();
        if (report.verify().isPresent() && !report.verify().get().ok()) {
            err.println("pageflux: verify failed: " + report.verify().get().text().strip());
            err.flush();
            return ExitCodes.FAILED;
        }
        return ExitCodes.OK;
    }

    static String text(IncrementalReport r) {
        StringBuilder sb = new StringBuilder(Reports.text(r.dump()));
        sb.append(String.format(Locale.ROOT, "  frozen   %.1f ms in total%n", r.frozen().toNanos() / 1e6));
        sb.append(FreezeOptions.frozenLines(r.freezes()));
        String against = r.parent().map(p -> p.dir() == null ? "the previous iteration" : p.dir().toString())
                .orElse(null);
        sb.append(String.format(Locale.ROOT, "  changes  %d pages sent, %d unchanged (PE_PARENT holes)%s%n",
                r.pagesSent(), r.pagesUnchanged(), against == null ? ", no parent" : " against " + against));
        sb.append("  method   ").append(ChangeDetectionOption.describe(r)).append(System.lineSeparator());
        r.changeDetection().reason().ifPresent(reason -> sb.append("  because  ").append(reason)
                .append(System.lineSeparator()));
        r.fallback().ifPresent(reason -> sb.append("  fallback ").append(reason).append(System.lineSeparator()));
        r.digestsFile().ifPresent(f -> sb.append("  digests  ").append(f).append(System.lineSeparator()));
        r.verify().ifPresent(v -> sb.append(v.text()));
        return sb.toString();
    }

    static ObjectNode json(IncrementalReport r) {
        ObjectNode root = Reports.json(r.dump());
        root.put("frozenMillis", r.frozen().toNanos() / 1e6);
        ArrayNode freezes = root.putArray("freezes");
        for (FreezeRecord f : r.freezes()) {
            ObjectNode n = freezes.addObject();
            n.put("mode", f.mode().cliName());
            n.put("freezer", f.freezer());
            n.put("threads", f.threads());
            n.put("stopLatencyMillis", f.latency().toNanos() / 1e6);
            n.put("frozenMillis", f.frozen().toNanos() / 1e6);
            n.put("runs", f.runs());
        }
        ObjectNode changes = root.putObject("changes");
        ChangeDetectionReport cd = r.changeDetection();
        changes.put("method", cd.method());
        cd.reason().ifPresent(reason -> changes.put("methodReason", reason));
        changes.put("pagesNotRead", cd.pagesNotRead());
        changes.put("frozenMillis", cd.frozenTime().toNanos() / 1e6);
        changes.put("softDirtyCleared", cd.softDirtyCleared());
        changes.put("pagesSent", r.pagesSent());
        changes.put("pagesUnchanged", r.pagesUnchanged());
        changes.put("hashMillis", r.hashTime().toNanos() / 1e6);
        r.parent().ifPresent(p -> changes.put("parent", p.dir() == null ? null : p.dir().toString()));
        r.fallback().ifPresent(reason -> changes.put("fallback", reason));
        r.digestsFile().ifPresent(f -> root.put("digests", f.toString()));
        r.verify().ifPresent(v -> root.set("verify", VerifyCommand.json(v)));
        return root;
    }
}
