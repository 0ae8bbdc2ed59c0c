package io.pageflux.source.freeze;

/** How long a dump keeps its target stopped. */
public enum FreezeMode {
    /** Never stopped: regions, pages and bytes are all taken while the target runs (a fuzzy picture). */
    NONE,
    /**
     * Stopped only while the regions and the page runs are scanned; the runs are collected while frozen,
     * then the target runs again while the bytes are read. Each page is read whole, but pages read later
     * may be newer than pages read earlier: what an iterative pre-dump wants (short pause), and the
     * change detection of the next iteration catches what changed meanwhile.
     */
    PRE_DUMP,
    /** Stopped from the scan until the last page is read: a consistent snapshot of the whole process. */
    DUMP;

    /** The CLI spelling: {@code none}, {@code pre-dump}, {@code dump}. */
    public String cliName() {
        return name().toLowerCase(java.util.Locale.ROOT).replace('_', '-');
    }

    /** Parses {@link #cliName()}. */
    public static FreezeMode fromCli(String name) {
        for (FreezeMode m : values()) {
            if (m.cliName().equals(name)) {
                return m;
            }
        }
        throw new IllegalArgumentException("unknown freeze mode '" + name + "': use none, pre-dump or dump");
    }
}
