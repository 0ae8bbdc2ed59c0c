package io.pageflux.cli;

import io.pageflux.pipeline.Dump;
import io.pageflux.pipeline.DumpReport;
import io.pageflux.pipeline.incremental.IncrementalDump;
import io.pageflux.pipeline.incremental.IncrementalReport;
import io.pageflux.pipeline.incremental.ParentDump;
import io.pageflux.pipeline.incremental.Verifier;
import io.pageflux.pipeline.incremental.VerifyReport;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.criu.CriuImageOptions;
import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.source.LiveProcess;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.RegionPolicy;
import io.pageflux.source.freeze.FreezeRecord;
import io.pageflux.source.freeze.Freezer;
import io.pageflux.source.incremental.PageDigests;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;
import reactor.core.Exceptions;

/**
 * {@code pageflux demo}: starts the sample process, dumps it, and proves the dump right byte by
 * byte against the live process and the sample's known pattern; then shows incremental pre-dumps with
 * freezing: frozen only while the pages are found, the second one writing only the pages the sample
 * changed, the chain checked against live memory.
 */
@Command(name = "demo",
        mixinStandardHelpOptions = true,
        header = "Dump a sample process and check every byte.",
        description = {
                "Start a sample process with a known memory layout (regions A-E: patterned pages, zero pages, "
                        + "PROT_NONE, shared anonymous, untouched; compiled with gcc on first use), dump it as CRIU "
                        + "images, re-read the images and check every dumped byte against the live process and "
                        + "against the known pattern, print a summary.",
                "Then pre-dump it twice with freezing (ptrace: stopped only while its pages are found, read while "
                        + "it runs) into DIR/pre-dump-1 and DIR/pre-dump-2, the second against the first after the "
                        + "sample rewrote a quarter of its bulk memory: only changed pages are written, the others "
                        + "become parent holes. Print each pre-dump's frozen time, freeze the sample once more to "
                        + "compare the chain with its memory byte by byte, and stop the sample process.",
                "The images stay in the directory (an earlier demo directory is replaced) for "
                        + "`pageflux inspect`."},
        footerHeading = "%nExamples:%n",
        footer = {"  pageflux demo", "  pageflux demo --dir /tmp/demo && pageflux inspect /tmp/demo",
                "  pageflux demo --keep     then, from another terminal: pageflux dump --pid <pid> --out /tmp/d1",
                "  pageflux demo && pageflux inspect pageflux-demo/pre-dump-2", ""},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:every check passed", "1:the dump or a check failed",
                "2:the directory exists and is not an earlier demo's"})
final class DemoCommand implements Callable<Integer> {

    @ParentCommand
    PagefluxCli parent;

    @Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--dir", paramLabel = "DIR", defaultValue = "pageflux-demo",
            description = "Where the images go (default ./${DEFAULT-VALUE}).")
    Path dir;

    @Option(names = "--keep",
            description = "Keep the sample process running after the checks until you press Enter, so that you "
                    + "can dump it yourself from another terminal.")
    boolean keep;

    /** MiB of bulk memory (region X) in the demo's sample: what the pre-dumps read and the rewrite changes. */
    static final int BULK_MIB = 16;
    static final String PRE_DUMP_1 = "pre-dump-1";
    static final String PRE_DUMP_2 = "pre-dump-2";

    @Override
    public Integer call() throws IOException {
        PrintWriter out = spec.commandLine().getOut();
        checkDemoDir(dir);
        out.println("starting the sample process (its C source is compiled with gcc on first use)...");
        out.flush();
        SampleProcess sample;
        try {
            sample = SampleProcess.start(BULK_MIB, false);
        } catch (IOException e) {
            throw CliException.failed("could not start the sample process: " + e.getMessage(), e);
        }
        try (sample) {
            int pid = sample.pid();
            out.printf(Locale.ROOT, "sample pid=%d:", pid);
            for (Region r : List.of(Region.A, Region.B, Region.C, Region.D, Region.E)) {
                out.printf(Locale.ROOT, " %s=0x%x", r, sample.address(r));
            }
            out.println();

            LiveProcess live = DumpCommand.attach(pid);
            List<MemoryRegion> regions = live.regions();
            PageSink sink = parent.env.sinkDecorator()
                    .apply(PageSinks.criuImages(dir, CriuImageOptions.defaults().withForce(true)));
            DumpReport report;
            try {
                report = Dump.of(live).regions(RegionPolicy.criuFullDump()).to(sink).run().block();
            } catch (RuntimeException e) {
                throw DumpCommand.runFailure(pid, Destination.directory(dir), Exceptions.unwrap(e));
            }
            out.print(Reports.text(report));

            ImageDirectory images;
            DemoCheck check;
            try {
                images = InspectCommand.open(dir);
                check = DemoCheck.run(images, sample, regions);
            } catch (CliException e) {
                throw new CliException(ExitCodes.FAILED, "demo check failed: the images pageflux just wrote are "
                        + "damaged: " + e.getMessage(), e);
            }
            out.printf(Locale.ROOT, "images  %s: %d pagemaps, %d entries, %d pages, every entry's bytes present%n",
                    dir, images.pagemaps().size(), images.entries(), images.presentPages());
            for (String line : check.lines) {
                out.println("check   " + line);
            }
            for (String problem : check.problems) {
                out.println("PROBLEM " + problem);
            }
            if (images.presentPages() != report.pagesDumped()) {
                check.problems.add("the report says " + report.pagesDumped() + " pages were dumped but the images hold "
                        + images.presentPages());
                out.println("PROBLEM " + check.problems.get(check.problems.size() - 1));
            }
            boolean ok = check.ok() && images.presentPages() == report.pagesDumped();
            out.flush();
            ok &= preDumps(out, sample);
            out.println("result  " + (ok ? "OK" : "FAILED") + " (images kept in " + dir + ": pageflux inspect " + dir + ")");
            out.flush();
            if (keep) {
                waitForEnter(out, pid);
            }
            return ok ? ExitCodes.OK : ExitCodes.FAILED;
        }
    }

    /**
     * Two pre-dumps with freezing and a check of the chain against the live sample; prints what happened
     * and returns whether every check passed.
     */
    private boolean preDumps(PrintWriter out, SampleProcess sample) throws IOException {
        int pid = sample.pid();
        Path pre1 = dir.resolve(PRE_DUMP_1);
        Path pre2 = dir.resolve(PRE_DUMP_2);
        out.println("pre-dump: the sample is frozen (ptrace, every thread) only while its pages are found, then read"
                + " while it runs");
        IncrementalReport first = preDump(pid, pre1, null);
        out.print(preDumpLine(PRE_DUMP_1, first));
        long rewritten = sample.rewrite();
        out.printf(Locale.ROOT, "sample  rewrote %d of %d pages of region X%n", rewritten, sample.bulkPages());
        IncrementalReport second = preDump(pid, pre2, ParentDump.open(pre1, pid));
        out.print(preDumpLine(PRE_DUMP_2, second));
        boolean ok = true;
        // besides the rewritten pages, a few others change as the sample answers (its stack, stdio buffers)
        if (second.pagesSent() < rewritten || second.pagesSent() > rewritten + 64) {
            ok = false;
            out.printf(Locale.ROOT, "PROBLEM %s sent %d pages, expected the %d rewritten ones and at most 64 others%n",
                    PRE_DUMP_2, second.pagesSent(), rewritten);
        }
        VerifyReport verify;
        try {
            verify = Verifier.verify(pre2, pid, Freezer.ptrace(pid));
        } catch (RuntimeException e) {
            throw FreezeOptions.classify("demo verify of " + pre2, e, true);
        }
        out.printf(Locale.ROOT, "verify  %s + parent, frozen %.2f ms: %d pages compared (%d from the parent) with the"
                        + " live sample: %s%n", PRE_DUMP_2, verify.frozen().toNanos() / 1e6, verify.pagesCompared(),
                verify.pagesFromParents(), verify.ok() ? "all equal" : "MISMATCH");
        if (!verify.ok()) {
            ok = false;
            out.print(verify.text());
        }
        return ok;
    }

    private IncrementalReport preDump(int pid, Path out, ParentDump parentDump) {
        try {
            return IncrementalDump.of(pid).parent(parentDump)
                    .to(parent.env.sinkDecorator().apply(PageSinks.criuImages(out))).digestsDir(out).run().block();
        } catch (RuntimeException e) {
            throw FreezeOptions.classify("demo pre-dump of pid=" + pid + " into " + out, e, true);
        }
    }

    private static String preDumpLine(String name, IncrementalReport r) {
        StringBuilder sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT, "%-11s %d pages written, %d unchanged (parent holes); frozen %.2f ms,"
                        + " whole pre-dump %.0f ms%n", name, r.pagesSent(), r.pagesUnchanged(), r.frozen().toNanos() / 1e6,
                r.duration().toNanos() / 1e6));
        for (FreezeRecord f : r.freezes()) {
            sb.append("           ").append(f).append(System.lineSeparator());
        }
        return sb.toString();
    }

    private void waitForEnter(PrintWriter out, int pid) throws IOException {
        out.printf(Locale.ROOT, "the sample process keeps running: pid=%d. From another terminal try:%n"
                + "  pageflux dump --pid %d --out /tmp/d1 && pageflux inspect /tmp/d1%n"
                + "  pageflux pre-dump --pid %d --out /tmp/pd3 --parent %s%n"
                + "press Enter to stop it%n", pid, pid, pid, dir.resolve(PRE_DUMP_2).toAbsolutePath());
        out.flush();
        new BufferedReader(new InputStreamReader(parent.env.stdin(), StandardCharsets.UTF_8)).readLine();
    }

    /**
     * The demo replaces its directory; refuse anything that might be the user's own data: the
     * directory must be absent, empty, or hold only image files and the demo's pre-dump directories.
     */
    static void checkDemoDir(Path dir) {
        if (!Files.exists(dir)) {
            return;
        }
        if (!Files.isDirectory(dir)) {
            throw CliException.badInput("dir=" + dir + " exists and is not a directory: remove it or pass --dir");
        }
        try (DirectoryStream<Path> entries = Files.newDirectoryStream(dir)) {
            for (Path e : entries) {
                String name = e.getFileName().toString();
                boolean preDump = (name.equals(PRE_DUMP_1) || name.equals(PRE_DUMP_2)) && isPreDumpDir(e);
                if (!preDump && !(name.endsWith(".img") && Files.isRegularFile(e))) {
                    throw CliException.badInput("dir=" + dir + " holds file=" + name + ", which a demo does not write: "
                            + "the demo replaces this directory, so remove it yourself or pass another --dir");
                }
            }
        } catch (IOException e) {
            throw CliException.badInput("dir=" + dir + " cannot be listed (" + OutputDirs.reason(e) + ")", e);
        }
        OutputDirs.checkWritable(dir, true);
    }

    /** A directory that holds only what a pre-dump writes: images, page digests, the parent link. */
    private static boolean isPreDumpDir(Path d) throws IOException {
        if (!Files.isDirectory(d, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            return false;
        }
        try (DirectoryStream<Path> entries = Files.newDirectoryStream(d)) {
            for (Path e : entries) {
                String name = e.getFileName().toString();
                boolean known = name.equals("parent") ? Files.isSymbolicLink(e)
                        : (name.endsWith(".img") || name.equals(PageDigests.FILE_NAME))
                        && Files.isRegularFile(e, java.nio.file.LinkOption.NOFOLLOW_LINKS);
                if (!known) {
                    return false;
                }
            }
        }
        return true;
    }
}
