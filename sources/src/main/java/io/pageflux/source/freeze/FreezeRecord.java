package io.pageflux.source.freeze;

import java.time.Duration;

/**
 * What one freeze of a dump cost the target.
 *
 * @param mode      the freeze mode
 * @param freezer   the freezer, e.g. {@code ptrace:1234}
 * @param threads   threads (or processes) stopped
 * @param latency   time to stop them all
 * @param frozen    how long the target was stopped in total (the pause its users saw)
 * @param scan      of which scanning regions and page runs (PRE_DUMP) or scanning and reading (DUMP)
 * @param runs      page runs collected while frozen (PRE_DUMP), 0 otherwise
 */
public record FreezeRecord(FreezeMode mode, String freezer, int threads, Duration latency, Duration frozen,
                           Duration scan, long runs) {

    @Override
    public String toString() {
        return String.format("frozen %.3f ms (%s, %d thread%s, stop latency %.3f ms, %s %.3f ms, runs=%d)",
                frozen.toNanos() / 1e6, freezer, threads, threads == 1 ? "" : "s", latency.toNanos() / 1e6,
                mode == FreezeMode.DUMP ? "scan+read" : "scan", scan.toNanos() / 1e6, runs);
    }
}
