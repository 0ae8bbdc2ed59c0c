package io.pageflux.source.freeze;

import io.pageflux.source.ChunkReader;
import io.pageflux.source.DumpStats;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PlannedRun;
import io.pageflux.source.PooledBuffer;
import java.time.Duration;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.function.Function;

/**
 * Reads planned runs, except those already marked {@link PageFlags#PE_PARENT} (holes decided before the read,
 * e.g. from soft-dirty bits): their pages are <b>not read</b>. A hole still occupies its bytes in a chunk, as
 * the sinks expect (they advance by every run's size and write or send only PE_PRESENT runs), but those bytes
 * are whatever the pooled buffer held: nothing is copied into them.
 *
 * <p>Chunks are either all holes or all read pages: the pages to read go, stretch by stretch, through a
 * reader made once by {@code live} (a {@code LiveChunkReader}) over an iterator that stops at the next hole.
 * Hole pages count in {@link DumpStats#chunkRead} like read ones (they are dumped, as holes), so progress
 * reaches its planned total; {@link #pagesRead()} and {@link #pagesSkipped()} tell them apart.
 *
 * <p>Single-threaded, like every {@link ChunkReader}.
 */
final class HoleSkippingReader implements ChunkReader {

    private static final int PAGE = PageRun.PAGE_SIZE;

    private final Iterator<PlannedRun> runs;
    private final DumpStats stats;
    private final ChunkReader live;
    private PlannedRun head;
    private long sequence;
    private long pagesRead;
    private long pagesSkipped;

    /**
     * @param runs  the planned runs, holes (PE_PARENT) among them, in address order
     * @param live  makes the reader of the pages to read from an iterator over them
     * @param stats receives the hole chunks ({@code chunkRead})
     */
    HoleSkippingReader(Iterator<PlannedRun> runs, Function<Iterator<PlannedRun>, ChunkReader> live, DumpStats stats) {
        this.runs = Objects.requireNonNull(runs, "runs");
        this.stats = Objects.requireNonNull(stats, "stats");
        this.live = live.apply(new Iterator<>() {
            @Override
            public boolean hasNext() {
                PlannedRun h = peek();
                return h != null && !isHole(h);
            }

            @Override
            public PlannedRun next() {
                if (!hasNext()) {
                    throw new NoSuchElementException("the next run is a hole or there is none");
                }
                PlannedRun h = head;
                head = null;
                return h;
            }
        });
    }

    static boolean isHole(PlannedRun run) {
        return PageFlags.has(run.run().flags(), PageFlags.PE_PARENT);
    }

    private PlannedRun peek() {
        if (head == null && runs.hasNext()) {
            head = runs.next();
        }
        return head;
    }

    @Override
    public PageChunk next(PooledBuffer buffer) throws Exception {
        while (true) {
            if (!live.exhausted()) {
                PageChunk chunk = live.next(buffer);
                if (chunk == null) {
                    continue; // every page of that stretch vanished: go on with what follows
                }
                pagesRead += chunk.pages();
                // one numbering for read and hole chunks: the reader's own count knows nothing of the holes
                return PageChunk.of(buffer, chunk.bytes(), chunk.runs(), sequence++);
            }
            if (peek() == null) {
                return null;
            }
            return holes(buffer);
        }
    }

    /** A chunk of consecutive holes, as many as fit; the last one is split if it does not. */
    private PageChunk holes(PooledBuffer buffer) {
        long room = buffer.capacity() / PAGE;
        java.util.List<PageRun> out = new java.util.ArrayList<>();
        long filled = 0;
        while (room > 0 && peek() != null && isHole(head)) {
            PageRun run = head.run();
            if (run.pages() <= room) {
                out.add(run);
                head = null;
            } else {
                out.add(run.slice(0, room));
                head = new PlannedRun(run.slice(room, run.pages() - room), head.via());
            }
            long taken = out.get(out.size() - 1).pages();
            filled += taken;
            room -= taken;
        }
        pagesSkipped += filled;
        stats.chunkRead(filled);
        return PageChunk.of(buffer, (int) (filled * PAGE), out, sequence++);
    }

    @Override
    public boolean exhausted() {
        return live.exhausted() && peek() == null;
    }

    @Override
    public Duration cost(PageChunk chunk) {
        return live.cost(chunk);
    }

    /** Pages read so far (not holes). */
    long pagesRead() {
        return pagesRead;
    }

    /** Hole pages passed on without being read. */
    long pagesSkipped() {
        return pagesSkipped;
    }

    @Override
    public void close() {
        live.close();
    }
}
