package io.pageflux.cli;

import io.pageflux.pipeline.incremental.ChangeDetectionReport;
import io.pageflux.pipeline.incremental.IncrementalReport;
import io.pageflux.source.freeze.FreezeMode;
import io.pageflux.source.incremental.ChangeDetection;
import io.pageflux.source.incremental.SoftDirty;
import io.pageflux.source.incremental.SoftDirtyDetector;
import java.util.Locale;

/** {@code --change-detection auto|soft-dirty|digest} of {@code pre-dump} and {@code migrate}. */
final class ChangeDetectionOption {

    static final String HELP = "How unchanged pages are found: auto (default: the kernel's soft-dirty bits where it "
            + "has them, else page digests), soft-dirty (an error without CONFIG_MEM_SOFT_DIRTY), digest (a 64-bit "
            + "hash per page; every page is read).";

    private ChangeDetectionOption() {
    }

    static ChangeDetection parse(String value) {
        try {
            return ChangeDetection.fromCli(value);
        } catch (IllegalArgumentException e) {
            throw CliException.badInput("--change-detection " + value + ": " + e.getMessage(), e);
        }
    }

    /** Bad input at once: soft-dirty asked for on a kernel without it (every iteration of migrate is frozen). */
    static void requireUsable(ChangeDetection detection, int pid) {
        requireUsable(detection, pid, FreezeMode.PRE_DUMP);
    }

    static void requireUsable(ChangeDetection detection, int pid, FreezeMode mode) {
        try {
            detection.requireUsable(pid, SoftDirty.kernel(), mode != FreezeMode.NONE);
        } catch (ChangeDetection.SoftDirtyUnsupportedException e) {
            throw CliException.badInput("--change-detection " + detection.cliName() + ": " + e.getMessage(), e);
        }
    }

    /** {@code soft-dirty: 900 pages not read, bits read and cleared frozen in 0.3 ms; hashing 1.2 ms}. */
    static String describe(IncrementalReport r) {
        ChangeDetectionReport cd = r.changeDetection();
        if (cd.method().equals(SoftDirtyDetector.METHOD)) {
            return String.format(Locale.ROOT, "soft-dirty: %d holes not read; bits read and cleared while frozen in"
                    + " %.2f ms; hashing the pages read for the next iteration %.1f ms", cd.pagesNotRead(),
                    cd.frozenTime().toNanos() / 1e6, r.hashTime().toNanos() / 1e6);
        }
        return String.format(Locale.ROOT, "digest: every page read and hashed (xxHash64) in %.1f ms%s",
                r.hashTime().toNanos() / 1e6, cd.softDirtyCleared() ? String.format(Locale.ROOT,
                        "; soft-dirty bits cleared while frozen in %.2f ms for the next iteration",
                        cd.frozenTime().toNanos() / 1e6) : "");
    }
}
