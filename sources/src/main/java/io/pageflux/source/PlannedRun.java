package io.pageflux.source;

/** A run the scan selected, with how its bytes must be read. */
public record PlannedRun(PageRun run, RegionDecision.ReadVia via) {
}
