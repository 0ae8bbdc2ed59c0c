package io.pageflux.cli;

import io.pageflux.sink.compress.CompressedImages;
import io.pageflux.sink.compress.UnpackResult;
import io.pageflux.sink.stream.StreamUnpacker;
import io.pageflux.source.PagefluxException;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code pageflux unpack IN OUT}: a compressed image directory or a dump stream back into plain CRIU images. */
@Command(name = "unpack",
        mixinStandardHelpOptions = true,
        header = "Turn a compressed dump or a dump stream into a plain CRIU image directory.",
        description = {
                "IN is a directory written with --compress, or - for a stream written by `dump --to -` on stdin. "
                        + "Every frame's checksum is verified; OUT is committed (renamed into place) only when "
                        + "all of IN was read and checked, so a truncated or corrupt input leaves nothing behind."},
        footerHeading = "%nExamples:%n",
        footer = {
                "  pageflux unpack /tmp/z1 /tmp/d1",
                "  pageflux dump --pid 1234 --to - --compress zstd | pageflux unpack - /tmp/d1",
                ""},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {
                "0:OUT holds the plain images",
                "1:reading or writing failed (I/O error, disk full)",
                "2:bad input: IN is truncated, corrupt or not a dump; OUT exists and is not empty (without --force)"})
final class UnpackCommand implements Callable<Integer> {

    @Spec
    CommandLine.Model.CommandSpec spec;

    @Parameters(index = "0", paramLabel = "IN", description = "A compressed image directory, or - for stdin.")
    String in;

    @Parameters(index = "1", paramLabel = "OUT", description = "The plain image directory to create.")
    Path out;

    @Option(names = "--force", description = "Replace the contents of a non-empty OUT.")
    boolean force;

    @Override
    public Integer call() {
        OutputDirs.checkWritable(out, force);
        UnpackResult result;
        try {
            result = in.equals("-") ? StreamUnpacker.unpackStdin(out, force)
                    : CompressedImages.unpack(Path.of(in), out, force);
        } catch (PagefluxException e) {
            throw CliException.badInput("unpack " + in + ": " + e.getMessage() + "; nothing was written to " + out, e);
        } catch (IOException e) {
            throw CliException.failed("unpack " + in + " into " + out + " failed: " + e.getMessage(), e);
        }
        PrintWriter err = spec.commandLine().getErr();
        err.printf("unpacked %s -> %s: %d pagemaps, %d entries, %d pages%n", in, result.directory(), result.pagemaps(),
                result.entries(), result.pages());
        err.flush();
        return ExitCodes.OK;
    }
}
