package io.pageflux.source;

import io.pageflux.nativeio.NativeCallException;

import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;

/**
 * How the scanner's failures to read {@code /proc/PID/smaps} and {@code /proc/PID/pagemap} become pageflux
 * exceptions (the process facts come from {@link ProcStat}, the permission advice from {@link LiveErrors}).
 */
final class ProcAccess {

    private ProcAccess() {
    }

    /** True when the process no longer has an address space (gone, zombie). */
    static boolean gone(int pid) {
        return !ProcStat.alive(pid);
    }

    /** Turns a failure to read {@code file} of process {@code pid} into the matching pageflux exception. */
    static PagefluxException fromIo(int pid, String file, IOException e) {
        if (e instanceof NoSuchFileException) {
            return new ProcessGoneException(pid, "file=" + file + " does not exist: the process exited or never existed", e);
        }
        if (e instanceof AccessDeniedException || isPermissionMessage(e.getMessage())) {
            return new PermissionDeniedException(pid, "file=" + file + " cannot be read: " + LiveErrors.permissionAdvice(), e);
        }
        if (gone(pid)) {
            return new ProcessGoneException(pid, "file=" + file + " could not be read: the process exited (" + e + ")", e);
        }
        return new PagefluxException("cannot read file=" + file + " pid=" + pid + ": " + e, e);
    }

    /** Turns a failed pagemap call on process {@code pid} into the matching pageflux exception. */
    static PagefluxException fromNative(int pid, NativeCallException e) {
        switch (e.errno()) {
            case ENOENT, ESRCH -> {
                return new ProcessGoneException(pid, "(" + e.getMessage() + ")", e);
            }
            case EACCES, EPERM -> {
                return new PermissionDeniedException(pid, "(" + e.getMessage() + "): " + LiveErrors.permissionAdvice(), e);
            }
            default -> {
                if (gone(pid)) {
                    return new ProcessGoneException(pid, "(" + e.getMessage() + ")", e);
                }
                return new PagefluxException(e.getMessage(), e);
            }
        }
    }

    private static boolean isPermissionMessage(String message) {
        // FileSystemException subclasses aside, plain IOExceptions from read() carry strerror text
        return message != null && (message.contains("Permission denied") || message.contains("Operation not permitted"));
    }
}
