package io.pageflux.source.incremental;

import io.pageflux.source.freeze.FreezingSource;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;

/**
 * {@value #METHOD}: the {@link ChangeDetector} (every page read and hashed, equal digests become holes),
 * optionally clearing the soft-dirty bits while the target is frozen so that the <em>next</em> iteration can
 * use {@link SoftDirtyDetector} (the first iteration of a soft-dirty chain, or one whose parent did not
 * clear them).
 */
public final class DigestDetector implements PageChangeDetector {

    /** The method's name in reports. */
    public static final String METHOD = "digest";

    private final ChangeDetector detector;
    private final int pid;
    private final SoftDirty.Kernel clearing;
    private final AtomicLong clearNanos = new AtomicLong();
    private volatile boolean cleared;

    /**
     * @param previous the parent's digests ({@link PageDigests#empty()}: every page is changed)
     * @param pid      the target
     * @param clearing clears its soft-dirty bits while frozen; {@code null}: leave them alone
     */
    public DigestDetector(PageDigests previous, int pid, SoftDirty.Kernel clearing) {
        this.detector = new ChangeDetector(Objects.requireNonNull(previous, "previous"));
        this.pid = pid;
        this.clearing = clearing;
    }

    @Override
    public String method() {
        return METHOD;
    }

    @Override
    public FreezingSource configure(FreezingSource source) {
        FreezingSource s = source.withReaderDecorator(detector::wrap);
        if (clearing == null) {
            return s;
        }
        clearing.prepareClear(pid); // the ledger's record: a file write, not while the target is stopped
        return s.withFrozenScanStep(runs -> {
            long t0 = System.nanoTime();
            clearing.clear(pid);
            clearNanos.addAndGet(System.nanoTime() - t0);
            cleared = true;
            return runs;
        });
    }

    @Override
    public long changedPages() {
        return detector.changedPages();
    }

    @Override
    public long unchangedPages() {
        return detector.unchangedPages();
    }

    @Override
    public long pagesNotRead() {
        return 0;
    }

    @Override
    public Duration hashTime() {
        return detector.hashTime();
    }

    @Override
    public Duration frozenTime() {
        return Duration.ofNanos(clearNanos.get());
    }

    @Override
    public boolean clearedSoftDirty() {
        return cleared;
    }

    @Override
    public PageDigests digests(int pid, long dumpUptimeMicros) {
        return detector.digests(pid, dumpUptimeMicros).withSoftDirtyCleared(cleared);
    }
}
