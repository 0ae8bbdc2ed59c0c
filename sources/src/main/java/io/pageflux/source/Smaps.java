package io.pageflux.source;

import java.util.List;

/** Parser of {@code /proc/PID/smaps}. */
public final class Smaps {

    private Smaps() {
    }

    // TODO(scanner helper)
    /** The regions of a live process, ascending. */
    public static List<MemoryRegion> read(int pid) {
        throw new UnsupportedOperationException("not yet");
    }

    /** The regions described by smaps text, ascending. */
    public static List<MemoryRegion> parse(String smapsText) {
        throw new UnsupportedOperationException("not yet");
    }
}
