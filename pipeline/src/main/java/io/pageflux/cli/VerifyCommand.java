package io.pageflux.cli;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.pageflux.pipeline.incremental.Verifier;
import io.pageflux.pipeline.incremental.VerifyReport;
import io.pageflux.source.freeze.Freezer;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/** {@code pageflux verify DIR --pid N}: the image chain equals the (frozen) process, byte for byte. */
@Command(name = "verify",
        sortOptions = false,
        mixinStandardHelpOptions = true,
        header = "Check that a dump (its parent chain resolved) equals a process's memory, byte for byte.",
        description = {
                "Freeze the target, resolve DIR's parent chain (PE_PARENT holes from the parents), compare every "
                        + "page of the images with live memory, check that every page the process has now is in the "
                        + "images, thaw. Meaningful right after a dump with --mode dump, or when the target has not "
                        + "run since the dump."},
        footerHeading = "%nExamples:%n",
        footer = {
                "  pageflux verify /tmp/pd2 --pid 1234",
                "  pageflux verify /tmp/d --pid 1234 --freezer cgroup --json",
                ""},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {
                "0:the images equal live memory",
                "1:they differ (the first differences are listed), or the check failed",
                "2:bad usage or input (pid, debugger attached, not a dump, broken parent chain)"})
final class VerifyCommand implements Callable<Integer> {

    @ParentCommand
    PagefluxCli parent;

    @Spec
    CommandLine.Model.CommandSpec spec;

    @Parameters(index = "0", paramLabel = "DIR", description = "The newest image directory of the chain.")
    Path dir;

    @Option(names = "--pid", required = true, paramLabel = "PID", description = "The process the images are of.")
    int pid;

    @Option(names = "--freezer", paramLabel = "ptrace|cgroup|cgroup:DIR|none", defaultValue = "ptrace",
            description = FreezeOptions.FREEZER_HELP + " none: do not freeze (the target is stopped already).")
    String freezer;

    @Option(names = "--json", description = "Print the result as JSON on stdout.")
    boolean json;

    @Override
    public Integer call() {
        DumpCommand.attach(pid);
        Freezer f = freezer.equals("none") ? null : FreezeOptions.freezer(freezer, pid);
        VerifyReport report;
        try {
            report = Verifier.verify(dir, pid, f);
        } catch (RuntimeException e) {
            throw FreezeOptions.classify("verify of dir=" + dir + " against pid=" + pid, e, false);
        }
        PrintWriter out = spec.commandLine().getOut();
        out.print(json ? json(report).toPrettyString() + System.lineSeparator() : report.text());
        out.flush();
        return report.ok() ? ExitCodes.OK : ExitCodes.FAILED;
    }

    static ObjectNode json(VerifyReport r) {
        ObjectNode n = Reports.JSON.createObjectNode();
        n.put("dir", r.dir().toString());
        n.put("pid", r.pid());
        n.put("ok", r.ok());
        n.put("chainDepth", r.chainDepth());
        n.put("pagesCompared", r.pagesCompared());
        n.put("pagesFromParents", r.pagesFromParents());
        n.put("bytesDiffer", r.bytesDiffer());
        n.put("notInMemory", r.notInMemory());
        n.put("notInImage", r.notInImage());
        n.put("pagesKernelWrittenOnly", r.pagesKernelWrittenOnly());
        n.put("frozenMillis", r.frozen().toNanos() / 1e6);
        ArrayNode examples = n.putArray("examples");
        r.examples().forEach(examples::add);
        return n;
    }
}
