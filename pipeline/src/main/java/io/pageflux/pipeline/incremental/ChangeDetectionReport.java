package io.pageflux.pipeline.incremental;

import java.time.Duration;
import java.util.Objects;
import java.util.Optional;

/**
 * How one iteration found its unchanged pages, and what it cost.
 *
 * @param method           {@code soft-dirty} or {@code digest}
 * @param reason           why soft-dirty bits were not used (or only cleared), if so
 * @param pagesNotRead     holes passed on without reading their pages (soft-dirty); 0 with page digests
 * @param frozenTime       time the method added while the target was frozen (reading and clearing the bits)
 * @param softDirtyCleared whether the bits were cleared while frozen, for the next iteration
 */
public record ChangeDetectionReport(String method, Optional<String> reason, long pagesNotRead, Duration frozenTime,
                                    boolean softDirtyCleared) {

    public ChangeDetectionReport {
        Objects.requireNonNull(method, "method");
        Objects.requireNonNull(reason, "reason");
        Objects.requireNonNull(frozenTime, "frozenTime");
    }
}
