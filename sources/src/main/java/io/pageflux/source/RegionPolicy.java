package io.pageflux.source;

/**
 * Decides, region by region, what a dump contains. The presets reproduce CRIU's selection
 * (criu-formats.md §3); write your own to dump less (e.g. only {@code [heap]}) or more.
 */
@FunctionalInterface
public interface RegionPolicy {

    RegionDecision decide(MemoryRegion region);

    /** CRIU's full dump: PROT_NONE regions included (read through {@code /proc/PID/mem}). */
    static RegionPolicy criuFullDump() {
        return CriuRegionPolicies.FULL_DUMP;
    }

    /** CRIU's read-mode pre-dump: only readable regions. */
    static RegionPolicy criuPreDump() {
        return CriuRegionPolicies.PRE_DUMP;
    }
}
