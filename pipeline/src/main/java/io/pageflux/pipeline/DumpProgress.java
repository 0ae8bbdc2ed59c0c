package io.pageflux.pipeline;

import java.time.Duration;
import java.util.Optional;

/**
 * A snapshot of a running dump, as {@link Dump#progress(Duration, java.util.function.Consumer)}
 * delivers it. The total grows while the dump runs: pages are scanned lazily, region by region,
 * so {@link #bytesPlanned()} is "selected so far", not a promise.
 *
 * @param pagesDone      pages read and handed to the sink(s)
 * @param pagesPlanned   pages the scan has selected so far
 * @param pagesVanished  selected pages that could not be read any more
 * @param elapsed        time since the dump started
 * @param leasedBuffers  pool buffers leased right now (never more than the budget allows)
 * @param finished       whether this is the last snapshot of a dump that completed
 * @param frozen         how long the target has been stopped so far (zero: never frozen, e.g. a
 *                       {@link io.pageflux.source.LiveProcess}); it grows while a frozen dump reads
 */
public record DumpProgress(long pagesDone, long pagesPlanned, long pagesVanished, Duration elapsed,
                           int leasedBuffers, boolean finished, Duration frozen) {

    public DumpProgress {
        java.util.Objects.requireNonNull(frozen, "frozen");
    }

    /** A snapshot of a dump that does not freeze its target. */
    public DumpProgress(long pagesDone, long pagesPlanned, long pagesVanished, Duration elapsed, int leasedBuffers,
                        boolean finished) {
        this(pagesDone, pagesPlanned, pagesVanished, elapsed, leasedBuffers, finished, Duration.ZERO);
    }

    /** A copy with {@code frozen} as the frozen time. */
    public DumpProgress withFrozen(Duration frozen) {
        return new DumpProgress(pagesDone, pagesPlanned, pagesVanished, elapsed, leasedBuffers, finished, frozen);
    }

    public long bytesDone() {
        return pagesDone * io.pageflux.source.PageRun.PAGE_SIZE;
    }

    public long bytesPlanned() {
        return pagesPlanned * io.pageflux.source.PageRun.PAGE_SIZE;
    }

    /** Bytes per second so far; 0 before anything was read. */
    public double bytesPerSecond() {
        long nanos = elapsed.toNanos();
        return nanos <= 0 ? 0 : bytesDone() * 1e9 / nanos;
    }

    /** Done / planned in [0, 1]; 0 while nothing is planned yet. */
    public double fraction() {
        long total = pagesPlanned;
        if (total <= 0) {
            return finished ? 1 : 0;
        }
        return Math.min(1.0, (double) (pagesDone + pagesVanished) / total);
    }

    /** Remaining time at the current rate, if there is a rate to go by. */
    public Optional<Duration> eta() {
        double rate = bytesPerSecond();
        if (rate <= 0) {
            return Optional.empty();
        }
        long remaining = Math.max(0, bytesPlanned() - bytesDone() - pagesVanished * io.pageflux.source.PageRun.PAGE_SIZE);
        return Optional.of(Duration.ofNanos((long) (remaining / rate * 1e9)));
    }
}
