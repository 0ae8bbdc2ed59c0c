package io.pageflux.cli;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;

/**
 * Checks on an output directory made before the target is touched, so that a dump that cannot be
 * written fails at once (exit 2) instead of after reading gigabytes.
 */
final class OutputDirs {

    private OutputDirs() {
    }

    /**
     * @throws CliException (bad input) when {@code out} is a file, a non-empty directory without
     *                      {@code force}, or in a place where nothing can be created
     */
    static void checkWritable(Path out, boolean force) {
        Path abs = out.toAbsolutePath().normalize();
        if (Files.exists(abs, LinkOption.NOFOLLOW_LINKS) || Files.exists(abs)) {
            if (!Files.isDirectory(abs)) {
                throw CliException.badInput("out=" + out + " exists and is not a directory: choose a directory path");
            }
            if (!isEmpty(abs) && !force) {
                throw CliException.badInput("out=" + out + " exists and is not empty: choose a new directory, or "
                        + "pass --force to replace its contents");
            }
        }
        Path existing = abs;
        while (existing != null && !Files.exists(existing)) {
            existing = existing.getParent();
        }
        if (existing == null || !Files.isDirectory(existing)) {
            throw CliException.badInput("out=" + out + " cannot be created: path=" + existing
                    + " is not a directory; choose a path under a writable directory");
        }
        // root passes every permission check, so ask the file system itself: a probe shows a
        // read-only mount, a full disk's missing inodes, or a pseudo file system like /proc
        Path parent = abs.getParent() != null && Files.isDirectory(abs.getParent()) ? abs.getParent() : existing;
        try {
            Path probe = Files.createTempDirectory(parent, ".pageflux-probe-");
            Files.delete(probe);
        } catch (IOException | UnsupportedOperationException | SecurityException e) {
            throw CliException.badInput("out=" + out + " is not writable: cannot create anything in dir=" + parent
                    + " (" + reason(e) + "); choose a writable directory", e);
        }
    }

    static boolean isEmpty(Path dir) {
        try (DirectoryStream<Path> entries = Files.newDirectoryStream(dir)) {
            return !entries.iterator().hasNext();
        } catch (IOException e) {
            throw CliException.badInput("out=" + dir + " cannot be listed (" + reason(e) + ")", e);
        }
    }

    /** The kernel's words for an I/O failure ({@code Read-only file system}, ...), not Java's class name. */
    static String reason(Exception e) {
        if (e instanceof java.nio.file.FileSystemException fse && fse.getReason() != null) {
            return fse.getReason();
        }
        // these carry only the path; say what the kernel said
        if (e instanceof java.nio.file.AccessDeniedException) {
            return "Permission denied";
        }
        if (e instanceof java.nio.file.NoSuchFileException) {
            return "No such file or directory";
        }
        if (e instanceof java.nio.file.FileAlreadyExistsException) {
            return "File exists";
        }
        if (e instanceof java.nio.file.NotDirectoryException) {
            return "Not a directory";
        }
        if (e instanceof java.nio.file.FileSystemException) {
            return e.getClass().getSimpleName();
        }
        return e.getMessage() != null ? e.getMessage() : e.getClass().getSimpleName();
    }
}
