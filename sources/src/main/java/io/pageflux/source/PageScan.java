package io.pageflux.source;

import java.util.Iterator;
import java.util.List;

/**
 * The runs of pages a dump reads, computed lazily region by region in ascending address order.
 * Single-threaded; close it to release the pagemap file descriptor.
 */
public final class PageScan implements Iterator<PlannedRun>, AutoCloseable {

    // TODO(scanner helper)
    public static PageScan open(int pid, List<MemoryRegion> regions, RegionPolicy policy, ScannerKind kind,
                                DumpStats stats) {
        throw new UnsupportedOperationException("not yet");
    }

    @Override
    public boolean hasNext() {
        throw new UnsupportedOperationException("not yet");
    }

    @Override
    public PlannedRun next() {
        throw new UnsupportedOperationException("not yet");
    }

    @Override
    public void close() {
    }
}
