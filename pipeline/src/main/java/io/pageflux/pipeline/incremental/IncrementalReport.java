package io.pageflux.pipeline.incremental;

import io.pageflux.pipeline.DumpReport;
import io.pageflux.source.freeze.FreezeRecord;
import io.pageflux.source.incremental.PageDigests;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;

/**
 * What one {@link IncrementalDump} did.
 *
 * @param pid            the target
 * @param dump           the underlying dump's report (pages read, sinks' results, ...)
 * @param parent         the parent it was compared against, if any (with the fallback reason, if any)
 * @param pagesSent      pages written with PE_PRESENT: changed since the parent, or all without one
 * @param pagesUnchanged pages written as PE_PARENT holes
 * @param hashTime       time spent hashing pages (page digests: every page; soft-dirty: the pages read, for
 *                       the next iteration's digests)
 * @param freezes        each freeze and how long the target was stopped
 * @param digests        the digests of this dump, for the next iteration
 * @param digestsFile    where they were written, if a directory was given
 * @param verify         the check made before thawing, if asked
 * @param duration       the whole iteration, freeze to thaw or completion
 * @param changeDetection how unchanged pages were found (soft-dirty or digest), why, and its cost
 */
public record IncrementalReport(int pid, DumpReport dump, Optional<ParentDump> parent, long pagesSent,
                                long pagesUnchanged, Duration hashTime, List<FreezeRecord> freezes,
                                PageDigests digests, Optional<Path> digestsFile, Optional<VerifyReport> verify,
                                Duration duration, ChangeDetectionReport changeDetection) {

    public IncrementalReport {
        freezes = List.copyOf(freezes);
    }

    /** How long the target was stopped, over all freezes of this iteration. */
    public Duration frozen() {
        Duration d = Duration.ZERO;
        for (FreezeRecord r : freezes) {
            d = d.plus(r.frozen());
        }
        return d;
    }

    /** Why no page could be a hole although a parent was given, if so. */
    public Optional<String> fallback() {
        return parent.flatMap(ParentDump::fallback);
    }

    /** One line: pages sent, unchanged, frozen time, duration, change detection method. */
    public String line() {
        return String.format("pages sent %d, unchanged %d, frozen %.1f ms, duration %.0f ms, method %s", pagesSent,
                pagesUnchanged, frozen().toNanos() / 1e6, duration.toNanos() / 1e6, changeDetection.method());
    }
}
