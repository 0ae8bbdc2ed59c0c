package io.pageflux.source;

/** The CRIU presets behind {@link RegionPolicy#criuFullDump()} and {@link RegionPolicy#criuPreDump()}. */
final class CriuRegionPolicies {

    // TODO(scanner helper): implement criu-formats.md §3
    static final RegionPolicy FULL_DUMP = region -> {
        throw new UnsupportedOperationException("not yet");
    };
    static final RegionPolicy PRE_DUMP = FULL_DUMP;

    private CriuRegionPolicies() {
    }
}
