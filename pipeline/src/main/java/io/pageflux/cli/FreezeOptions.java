package io.pageflux.cli;

import io.pageflux.pipeline.incremental.MigrationException;
import io.pageflux.pipeline.incremental.ParentDumpException;
import io.pageflux.source.PagefluxException;
import io.pageflux.source.PermissionDeniedException;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.freeze.AlreadyTracedException;
import io.pageflux.source.freeze.CgroupFreezer;
import io.pageflux.source.freeze.FreezeException;
import io.pageflux.source.freeze.FreezeRecord;
import io.pageflux.source.freeze.Freezer;
import io.pageflux.source.freeze.ThreadFreezer;
import io.pageflux.source.incremental.ChangeDetection;
import java.nio.file.Path;
import java.util.List;
import reactor.core.Exceptions;

/**
 * What {@code pre-dump}, {@code migrate} and {@code verify} share: the {@code --freezer} option, turning
 * freeze and parent errors into exit codes, and the frozen-time lines.
 */
final class FreezeOptions {

    static final String FREEZER_HELP = "How to stop the target: ptrace (default: every thread, the kernel lets it go"
            + " if pageflux dies), cgroup (its cgroup v2, cgroup.freeze) or cgroup:DIR.";

    private FreezeOptions() {
    }

    /** Parses {@code --freezer}. */
    static Freezer freezer(String spec, int pid) {
        try {
            if (spec.equals("ptrace")) {
                return ThreadFreezer.of(pid);
            }
            if (spec.equals("cgroup")) {
                return CgroupFreezer.forPid(pid);
            }
            if (spec.startsWith("cgroup:")) {
                return CgroupFreezer.of(Path.of(spec.substring("cgroup:".length())));
            }
        } catch (ProcessGoneException e) {
            throw CliException.badInput(e.getMessage() + "; check the pid with: ps -p " + pid, e);
        } catch (FreezeException e) {
            throw CliException.badInput("--freezer " + spec + ": " + e.getMessage(), e);
        }
        throw CliException.badInput("--freezer " + spec + ": unknown freezer; use ptrace, cgroup or cgroup:DIR");
    }

    /**
     * Classifies a failure: refusals that happen before anything was written (a wrong pid, a debugger
     * attached, a bad parent, no permission) are bad input (exit 2); the rest failed (exit 1).
     */
    static CliException classify(String what, Throwable e, boolean started) {
        Throwable cause = Exceptions.unwrap(e);
        if (cause instanceof MigrationException m) {
            return CliException.failed(m.getMessage(), m);
        }
        if (cause instanceof AlreadyTracedException || cause instanceof ParentDumpException
                || cause instanceof PermissionDeniedException
                || cause instanceof ChangeDetection.SoftDirtyUnsupportedException) {
            return CliException.badInput(cause.getMessage(), cause);
        }
        if (cause instanceof ProcessGoneException) {
            return started ? CliException.failed(what + " failed: the target exited: " + cause.getMessage(), cause)
                    : CliException.badInput(cause.getMessage(), cause);
        }
        if (cause instanceof PagefluxException || cause instanceof IllegalArgumentException
                || cause instanceof IllegalStateException) {
            return CliException.failed(what + " failed: " + cause.getMessage(), cause);
        }
        return CliException.failed(what + " failed: " + cause, cause);
    }

    /** {@code frozen 4.2 ms (ptrace:1234, 3 threads, ...)} per freeze. */
    static String frozenLines(List<FreezeRecord> freezes) {
        StringBuilder sb = new StringBuilder();
        for (FreezeRecord r : freezes) {
            sb.append("  ").append(r).append(System.lineSeparator());
        }
        return sb.toString();
    }
}
