package io.pageflux.cli;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.pageflux.pipeline.Dump;
import io.pageflux.pipeline.DumpReport;
import io.pageflux.sink.PageSink;
import io.netty.handler.ssl.SslContext;
import io.pageflux.sink.compress.Codec;
import io.pageflux.source.LiveChunkReader;
import io.pageflux.source.LiveProcess;
import io.pageflux.source.MemorySource;
import io.pageflux.source.PagefluxException;
import io.pageflux.source.PermissionDeniedException;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.RegionPolicy;
import io.pageflux.source.ScannerKind;
import io.pageflux.source.freeze.AlreadyTracedException;
import io.pageflux.source.freeze.FreezeException;
import io.pageflux.source.freeze.FreezeMode;
import io.pageflux.source.freeze.FreezeRecord;
import io.pageflux.source.freeze.FreezingSource;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;
import reactor.core.Exceptions;

/** {@code pageflux dump}: one live process into a CRIU image directory (or nowhere, to measure). */
@Command(name = "dump",
        sortOptions = false,
        mixinStandardHelpOptions = true,
        header = "Dump a running process into CRIU image files.",
        description = {
                "Dump the memory of a running process without stopping it. The images are written under a "
                        + "temporary name and renamed into place when complete, so a failed dump leaves nothing "
                        + "that looks complete.",
                "A progress bar (bytes done of the bytes selected so far, rate, ETA) is shown when stderr is "
                        + "a terminal; a summary follows at the end."},
        footerHeading = "%nExamples:%n",
        footer = {
                "  pageflux dump --pid 1234 --out /tmp/d1",
                "  pageflux dump --pid 1234 --to dir:/tmp/d1 --force      replace an earlier dump",
                "  pageflux dump --pid 1234 --out /tmp/p1 --policy pre-dump",
                "  pageflux dump --pid 1234 --to null --budget 16M --json  measure reading only",
                "  pageflux dump --pid 1234 --out /tmp/z1 --compress zstd:1",
                "  pageflux dump --pid 1234 --to tcp://127.0.0.1:27027     send to a page server",
                "  pageflux dump --pid 1234 --to - --compress lz4 | ssh host pageflux unpack - /tmp/d1",
                ""},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {
                "0:the images are complete",
                "1:the dump failed after it had started (target exited, disk full, write error)",
                "2:bad usage or input (pid, permissions, output directory, sizes)"})
final class DumpCommand implements Callable<Integer> {

    @ParentCommand
    PagefluxCli parent;

    @Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--pid", required = true, paramLabel = "PID", description = "The process to dump.")
    int pid;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Output output;

    static final class Output {
        @Option(names = "--out", paramLabel = "DIR", description = "Write CRIU images into DIR (created).")
        Path out;

        @Option(names = "--to", paramLabel = "URI",
                description = "Destination: dir:PATH (CRIU images), tcp://HOST:PORT (a CRIU page server: pageflux's or "
                        + "`criu page-server`), - (the single-stream format on stdout, for pipes) or null (discard "
                        + "the pages, for measuring).")
        String to;
    }

    @Option(names = "--force", description = "Replace the contents of a non-empty output directory.")
    boolean force;

    @Option(names = "--no-direct-io", description = "Write pages files through the page cache instead of with "
            + "O_DIRECT (the default, which falls back by itself where the file system refuses it).")
    boolean noDirectIo;

    @Option(names = "--policy", paramLabel = "full|pre-dump", defaultValue = "full",
            description = "Which regions: full (CRIU's full dump, incl. PROT_NONE regions; default) or "
                    + "pre-dump (CRIU's read-mode pre-dump: readable regions only, pre-dump inventory).")
    String policy;

    @Mixin
    BufferOptions buffers;


    @Option(names = "--scanner", paramLabel = "auto|pagemap-scan|pagemap-file", defaultValue = "auto",
            description = "How present pages are found: auto (the PAGEMAP_SCAN ioctl, or /proc/PID/pagemap on kernels "
                    + "before 6.7; default), pagemap-scan (the ioctl only) or pagemap-file (read /proc/PID/pagemap, "
                    + "8 bytes per page of address space: slow on large sparse mappings).")
    String scanner;

    @Option(names = "--read-threads", paramLabel = "N", defaultValue = "1",
            description = "Threads copying each read batch (1..16, default ${DEFAULT-VALUE}). 2 copies almost twice as "
                    + "fast when a second core is free, and takes that core from the target and the sink; it helps only when the "
                    + "copy is the bottleneck (--to null, a fast page server), not when writing to disk or compressing.")
    int readThreads;

    @Option(names = "--mode", paramLabel = "none|pre-dump|dump", defaultValue = "none",
            description = "Freeze the target: not at all (none, default), while its pages are found (pre-dump), or "
                    + "until the images are written (dump: a consistent snapshot). The frozen time is reported.")
    String mode;

    @Option(names = "--freezer", paramLabel = "ptrace|cgroup|cgroup:DIR", defaultValue = "ptrace",
            description = FreezeOptions.FREEZER_HELP)
    String freezer;

    @Option(names = "--compress", paramLabel = "CODEC",
            description = "Compress page data: zstd[:LEVEL], lz4, gzip[:LEVEL] (a directory gets pages-<id>.img.zst/.lz4/.gz "
                    + "with standard pagemaps; `pageflux unpack` restores plain CRIU files). Also applies to --to -.")
    String compress;

    @Option(names = "--tls-cert", paramLabel = "PEM", description = "With --to tcp://: client certificate (PEM) for a TLS page server.")
    Path tlsCert;

    @Option(names = "--tls-key", paramLabel = "PEM", description = "With --to tcp://: the client certificate's key (PEM, PKCS#8).")
    Path tlsKey;

    @Option(names = "--tls-cacert", paramLabel = "PEM", description = "With --to tcp://: the CA that signed the server's "
            + "certificate; enables TLS.")
    Path tlsCaCert;

    @Option(names = "--json", description = "Print the final report as JSON on stdout (instead of the summary).")
    boolean json;

    @Option(names = "--no-progress", description = "No progress bar, even on a terminal.")
    boolean noProgress;

    @Override
    public Integer call() {
        Destination destination = output.out != null ? Destination.directory(output.out) : Destination.parse(output.to);
        boolean preDump = switch (policy) {
            case "full" -> false;
            case "pre-dump", "predump" -> true;
            default -> throw CliException.badInput("--policy " + policy + ": unknown policy; use full or pre-dump");
        };
        // everything that can be checked without the target is checked first
        Codec codec = null;
        if (compress != null) {
            try {
                codec = Codec.parse(compress);
            } catch (IllegalArgumentException e) {
                throw CliException.badInput("--compress " + compress + ": " + e.getMessage(), e);
            }
        }
        SslContext tls = Sinks.clientTls(tlsCaCert, tlsCert, tlsKey, destination);
        if (destination.kind() == Destination.Kind.STDOUT && json) {
            throw CliException.badInput("--to - writes the dump itself to stdout: drop --json (the summary goes to stderr)");
        }
        buffers.check();
        if (destination.kind() == Destination.Kind.DIR) {
            OutputDirs.checkWritable(destination.dir(), force);
        }
        ScannerKind scannerKind = scannerKind(scanner);
        if (readThreads < 1 || readThreads > LiveChunkReader.MAX_READ_THREADS) {
            throw CliException.badInput("--read-threads " + readThreads + ": use 1.." + LiveChunkReader.MAX_READ_THREADS);
        }
        LiveProcess target = attach(pid).withScanner(scannerKind);
        FreezeMode freezeMode;
        try {
            freezeMode = FreezeMode.fromCli(mode);
        } catch (IllegalArgumentException e) {
            throw CliException.badInput("--mode " + mode + ": " + e.getMessage(), e);
        }
        MemorySource source = freezeMode == FreezeMode.NONE ? target
                : FreezingSource.of(pid, FreezeOptions.freezer(freezer, pid), freezeMode).withScanner(scannerKind);

        PrintWriter err = spec.commandLine().getErr();
        // with --to - stdout carries the dump; the summary goes to stderr
        PrintWriter out = destination.kind() == Destination.Kind.STDOUT ? err : spec.commandLine().getOut();
        PageSink sink = parent.env.sinkDecorator().apply(Sinks.create(destination, force, !noDirectIo, codec, tls));
        Dump dump = Dump.of(source)
                .regions(preDump ? RegionPolicy.criuPreDump() : RegionPolicy.criuFullDump())
                .preDump(preDump)
                .budget(buffers.budget)
                .chunkSize(buffers.chunkSize)
                .readThreads(readThreads)
                .to(sink);
        ProgressBar bar = null;
        if (parent.env.progressTerminal() && !noProgress) {
            bar = new ProgressBar(err);
            dump = dump.progress(parent.env.progressInterval(), bar);
        }
        DumpReport report;
        try {
            report = dump.run().block();
        } catch (RuntimeException e) {
            if (bar != null) {
                bar.close();
            }
            Throwable cause = Exceptions.unwrap(e);
            if (cause instanceof AlreadyTracedException || cause instanceof FreezeException) {
                throw FreezeOptions.classify("dump of pid=" + pid, cause, true);
            }
            throw runFailure(pid, destination, cause);
        }
        List<FreezeRecord> freezes = source instanceof FreezingSource fs ? fs.freezes() : List.of();
        if (json) {
            ObjectNode node = Reports.json(report);
            freezes.forEach(f -> node.put("frozenMillis", f.frozen().toNanos() / 1e6));
            out.println(node.toPrettyString());
        } else {
            out.print(Reports.text(report));
            out.print(FreezeOptions.frozenLines(freezes));
        }
        out.flush();
        return ExitCodes.OK;
    }

    static ScannerKind scannerKind(String text) {
        return switch (text) {
            case "auto" -> ScannerKind.AUTO;
            case "pagemap-scan" -> ScannerKind.PAGEMAP_SCAN;
            case "pagemap-file" -> ScannerKind.PAGEMAP_FILE;
            default -> throw CliException.badInput("--scanner " + text
                    + ": unknown scanner; use auto, pagemap-scan or pagemap-file");
        };
    }

    /** Attaching is where a wrong pid shows: each refusal is bad input (exit 2). */
    static LiveProcess attach(int pid) {
        try {
            return LiveProcess.attach(pid);
        } catch (ProcessGoneException e) {
            String advice = e.getMessage().contains("ps -p") ? "" : "; check the pid with: ps -p " + pid;
            throw CliException.badInput(e.getMessage() + advice, e);
        } catch (PermissionDeniedException e) {
            throw CliException.badInput("may not trace the process: " + e.getMessage(), e);
        } catch (PagefluxException | IllegalArgumentException e) {
            throw CliException.badInput("cannot dump pid=" + pid + ": " + e.getMessage(), e);
        }
    }

    /** A failure after the dump started: exit 1, and say what is (not) left behind. */
    static CliException runFailure(int pid, Destination destination, Throwable cause) {
        if (cause instanceof PermissionDeniedException) {
            return CliException.badInput("may not read the memory of pid=" + pid + ": " + cause.getMessage(), cause);
        }
        String what = cause instanceof ProcessGoneException
                ? "the target exited during the dump: " + cause.getMessage()
                : cause.getMessage() != null ? cause.getMessage() : cause.toString();
        String left = "";
        if (destination.kind() == Destination.Kind.DIR) {
            Path dir = destination.dir();
            left = Files.exists(dir) && !OutputDirs.isEmpty(dir)
                    ? "; out=" + dir + " keeps its earlier contents, no new images were committed"
                    : "; nothing was left at out=" + dir;
        }
        return CliException.failed("dump of pid=" + pid + " failed: " + what + left, cause);
    }
}
