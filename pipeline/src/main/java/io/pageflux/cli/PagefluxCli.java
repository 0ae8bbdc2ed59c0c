package io.pageflux.cli;

import io.pageflux.sink.criu.CriuImageSink;
import io.pageflux.source.DataSize;
import java.io.PrintWriter;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

/**
 * The {@code pageflux} command: {@code dump}, {@code inspect}, {@code demo}. Run
 * {@code pageflux --help} or {@code pageflux help dump} for the options.
 *
 * <p>Exit codes: {@value ExitCodes#OK} ok, {@value ExitCodes#FAILED} the dump failed,
 * {@value ExitCodes#BAD_INPUT} bad usage or input. Errors are one line on stderr, starting with
 * {@code pageflux:}, naming the pid or path at fault and what to do.
 */
@Command(name = "pageflux",
        mixinStandardHelpOptions = true,
        versionProvider = PagefluxCli.Version.class,
        description = "Dump the memory of a live Linux process into CRIU image files through a bounded "
                + "Reactor pipeline, without stopping it or injecting anything.",
        subcommands = {DumpCommand.class, InspectCommand.class, DemoCommand.class, PreDumpCommand.class,
                UnpackCommand.class, PageServerCommand.class,
                MigrateCommand.class, VerifyCommand.class, CommandLine.HelpCommand.class},
        footerHeading = "%nExamples:%n",
        footer = {
                "  pageflux demo                         # dump a sample, check every byte",
                "  pageflux dump --pid 1234 --out /tmp/d1  # CRIU images, progress bar, summary",
                "  pageflux dump --pid 1234 --to null --json           # measure reading only",
                "  pageflux dump --pid 1234 --out /tmp/p1 --policy pre-dump --budget 16M",
                "  pageflux inspect /tmp/d1              # entries, totals, data check",
                "",
                "Run 'pageflux help COMMAND' for a command's options."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {
                "0:ok (demo: every check passed)",
                "1:the dump failed: the target exited mid-dump, the disk filled up, a sink failed "
                        + "(nothing complete-looking is left behind)",
                "2:bad usage or input: unknown option, unknown pid, kernel thread, no permission to trace, "
                        + "unusable output directory, budget below one chunk, damaged image files"})
public final class PagefluxCli implements Runnable {

    final CliEnvironment env;

    @Spec
    CommandSpec spec;

    PagefluxCli(CliEnvironment env) {
        this.env = env;
    }

    /**
     * Set by the {@code pageflux} launcher in the run that writes its class-data-sharing archive:
     * that run then also loads the classes of the image writer, which a dump to another sink
     * never loads, so that the archive serves every later dump.
     */
    static final String CDS_ARCHIVE_RUN_PROPERTY = "pageflux.cds.archiveRun";

    public static void main(String[] args) {
        int code = commandLine().execute(args);
        if (Boolean.getBoolean(CDS_ARCHIVE_RUN_PROPERTY)) {
            CriuImageSink.initializeClasses();
        }
        System.exit(code);
    }

    /** The command line for this process (progress bar when on a terminal). */
    public static CommandLine commandLine() {
        return commandLine(CliEnvironment.detect());
    }

    static CommandLine commandLine(CliEnvironment env) {
        CommandLine cl = new CommandLine(new PagefluxCli(env));
        cl.setExecutionExceptionHandler(PagefluxCli::handle);
        cl.registerConverter(DataSize.class, PagefluxCli::size);
        cl.setCaseInsensitiveEnumValuesAllowed(true);
        return cl;
    }

    @Override
    public void run() {
        // no subcommand: show what there is, and say it was a usage error
        throw new CommandLine.ParameterException(spec.commandLine(), "a command is required: dump, inspect or demo");
    }

    private static DataSize size(String text) {
        try {
            return DataSize.parse(text);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.TypeConversionException(e.getMessage());
        }
    }

    /** Every failure ends here: one line on stderr and the documented exit code. */
    private static int handle(Exception e, CommandLine cl, CommandLine.ParseResult parsed) {
        PrintWriter err = cl.getErr();
        if (e instanceof CliException ce) {
            err.println("pageflux: " + ce.getMessage());
            err.flush();
            return ce.exitCode();
        }
        // not classified by a command: a bug or an environment problem; show the whole story
        err.println("pageflux: unexpected error: " + e);
        e.printStackTrace(err);
        err.flush();
        return ExitCodes.FAILED;
    }

    /** {@code --version}: the jar's implementation version. */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = PagefluxCli.class.getPackage().getImplementationVersion();
            return new String[] {"pageflux " + (v == null ? "(development build)" : v)};
        }
    }
}
