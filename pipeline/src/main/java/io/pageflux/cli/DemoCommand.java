package io.pageflux.cli;

import io.pageflux.pipeline.Dump;
import io.pageflux.pipeline.DumpReport;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.criu.CriuImageOptions;
import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.source.LiveProcess;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.RegionPolicy;
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
 * byte against the live process and the sample's known pattern.
 */
@Command(name = "demo",
        mixinStandardHelpOptions = true,
        header = "Dump a sample process and check every byte.",
        description = {
                "Start a sample process with a known memory layout (regions A-E: patterned pages, zero pages, "
                        + "PROT_NONE, shared anonymous, untouched; compiled with gcc on first use), dump it as CRIU "
                        + "images, re-read the images and check every dumped byte against the live process and "
                        + "against the known pattern, print a summary, and stop the sample process.",
                "The images stay in the directory (an earlier demo directory is replaced) for "
                        + "`pageflux inspect`."},
        footerHeading = "%nExamples:%n",
        footer = {"  pageflux demo", "  pageflux demo --dir /tmp/demo && pageflux inspect /tmp/demo",
                "  pageflux demo --keep     then, from another terminal: pageflux dump --pid <pid> --out /tmp/d1", ""},
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

    @Override
    public Integer call() throws IOException {
        PrintWriter out = spec.commandLine().getOut();
        checkDemoDir(dir);
        out.println("starting the sample process (its C source is compiled with gcc on first use)...");
        out.flush();
        SampleProcess sample;
        try {
            sample = SampleProcess.start();
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
            out.println("result  " + (ok ? "OK" : "FAILED") + " (images kept in " + dir + ": pageflux inspect " + dir + ")");
            out.flush();
            if (keep) {
                waitForEnter(out, pid);
            }
            return ok ? ExitCodes.OK : ExitCodes.FAILED;
        }
    }

    private void waitForEnter(PrintWriter out, int pid) throws IOException {
        out.printf(Locale.ROOT, "the sample process keeps running: pid=%d. From another terminal try:%n"
                + "  pageflux dump --pid %d --out /tmp/d1 && pageflux inspect /tmp/d1%n"
                + "press Enter to stop it%n", pid, pid);
        out.flush();
        new BufferedReader(new InputStreamReader(parent.env.stdin(), StandardCharsets.UTF_8)).readLine();
    }

    /**
     * The demo replaces its directory; refuse anything that might be the user's own data: the
     * directory must be absent, empty, or hold only image files.
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
                if (!(name.endsWith(".img") && Files.isRegularFile(e))) {
                    throw CliException.badInput("dir=" + dir + " holds file=" + name + ", which a demo does not write: "
                            + "the demo replaces this directory, so remove it yourself or pass another --dir");
                }
            }
        } catch (IOException e) {
            throw CliException.badInput("dir=" + dir + " cannot be listed (" + OutputDirs.reason(e) + ")", e);
        }
        OutputDirs.checkWritable(dir, true);
    }
}
