package io.pageflux.source.freeze;

import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.PlannedRun;
import io.pageflux.source.RegionDecision.ReadVia;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;

/**
 * Planned runs stored compactly (parallel primitive arrays, about 30 bytes per run instead of two objects
 * each), so that a scan can be drained quickly while the target is frozen and replayed after the thaw.
 * Append-only, then iterate; not thread-safe while being filled.
 */
public final class RunList implements Iterable<PlannedRun> {

    private static final ReadVia[] VIAS = ReadVia.values();

    private long[] addresses = new long[256];
    private long[] pages = new long[256];
    private long[] pagemapVaddrs = new long[256];
    private int[] flags = new int[256];
    private byte[] vias = new byte[256];
    private short[] pagemaps = new short[256];
    private final List<PagemapId> pagemapIds = new ArrayList<>();
    private int size;
    private long totalPages;

    /** Drains {@code runs} (e.g. a {@code PageScan}) into a new list. */
    public static RunList drain(Iterator<PlannedRun> runs) {
        RunList list = new RunList();
        while (runs.hasNext()) {
            list.add(runs.next());
        }
        return list;
    }

    public void add(PlannedRun planned) {
        PageRun run = planned.run();
        add(run.address(), run.pages(), run.pagemap(), run.pagemapVaddr(), run.flags(), planned.via());
    }

    /**
     * Appends the run {@code new PlannedRun(new PageRun(address, pages, pagemap, pagemapVaddr, flags), via)}
     * without making those objects: for a frozen step that cuts runs into many pieces.
     *
     * @throws IllegalArgumentException if {@code pages <= 0}
     */
    public void add(long address, long runPages, PagemapId pagemap, long pagemapVaddr, int runFlags, ReadVia via) {
        if (runPages <= 0) {
            throw new IllegalArgumentException("a run has at least one page: address=0x" + Long.toHexString(address)
                    + " pages=" + runPages);
        }
        if (size == addresses.length) {
            int n = size * 2;
            addresses = Arrays.copyOf(addresses, n);
            pages = Arrays.copyOf(pages, n);
            pagemapVaddrs = Arrays.copyOf(pagemapVaddrs, n);
            flags = Arrays.copyOf(flags, n);
            vias = Arrays.copyOf(vias, n);
            pagemaps = Arrays.copyOf(pagemaps, n);
        }
        addresses[size] = address;
        pages[size] = runPages;
        pagemapVaddrs[size] = pagemapVaddr;
        flags[size] = runFlags;
        vias[size] = (byte) via.ordinal();
        pagemaps[size] = pagemapIndex(pagemap);
        size++;
        totalPages += runPages;
    }

    private short pagemapIndex(PagemapId id) {
        if (size > 0 && pagemapIds.get(pagemaps[size - 1]) == id) {
            return pagemaps[size - 1]; // the pieces of one run share its id: no lookup
        }
        // a handful of pagemaps (the task and its shared objects): linear search, most recent first
        for (int i = pagemapIds.size() - 1; i >= 0; i--) {
            if (pagemapIds.get(i).equals(id)) {
                return (short) i;
            }
        }
        if (pagemapIds.size() == Short.MAX_VALUE) {
            throw new IllegalStateException("more than " + Short.MAX_VALUE + " pagemaps in one dump");
        }
        pagemapIds.add(id);
        return (short) (pagemapIds.size() - 1);
    }

    public int size() {
        return size;
    }

    public long pages() {
        return totalPages;
    }

    public PlannedRun get(int i) {
        if (i < 0 || i >= size) {
            throw new IndexOutOfBoundsException("run " + i + " of " + size);
        }
        return new PlannedRun(new PageRun(addresses[i], pages[i], pagemapIds.get(pagemaps[i]), pagemapVaddrs[i],
                flags[i]), VIAS[vias[i]]);
    }

    /** Bytes of the arrays, about. */
    public long memoryBytes() {
        return (long) addresses.length * (8 + 8 + 8 + 4 + 1 + 2);
    }

    @Override
    public Iterator<PlannedRun> iterator() {
        return new Iterator<>() {
            private int next;

            @Override
            public boolean hasNext() {
                return next < size;
            }

            @Override
            public PlannedRun next() {
                if (next >= size) {
                    throw new NoSuchElementException();
                }
                return get(next++);
            }
        };
    }

    @Override
    public String toString() {
        return "RunList[runs=" + size + " pages=" + totalPages + "]";
    }
}
