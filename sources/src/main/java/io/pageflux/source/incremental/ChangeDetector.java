package io.pageflux.source.incremental;

import io.pageflux.source.ChunkReader;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.PooledBuffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Finds the pages that changed since the previous dump without soft-dirty bits: every page read is
 * hashed ({@link XxHash64}) and compared with the previous dump's {@link PageDigests}; a page whose digest
 * is equal becomes part of a {@link PageFlags#PE_PARENT} run (a hole: the restorer takes it from the
 * parent), any other page keeps the flags the scan gave it (PE_PRESENT, maybe PE_LAZY). The digests of
 * this dump are collected for the next iteration ({@link #digests}).
 *
 * <p><b>Where it runs.</b> {@link #wrap} decorates the {@link ChunkReader} of a dump: classification
 * happens on the read worker, right after each buffer is filled, so no extra buffer or copy is needed.
 * The chunk keeps every page's bytes (they had to be read to be hashed); a hole run's bytes stay in the
 * buffer and <b>sinks skip the bytes of runs without PE_PRESENT</b> — the page-server client and the
 * image-directory sink both advance their offset by every run's size and send/write only PE_PRESENT
 * runs.
 *
 * <p><b>Cost.</b> Every page is still read (that is what hashing needs); only changed pages are written
 * or sent. Hashing runs at several GB/s on one core; the digests take 8 bytes per page plus 20 per run
 * of consecutive pages.
 *
 * <p>One detector serves one dump (one subscription). Counters may be read from any thread.
 */
public final class ChangeDetector {

    private static final int PAGE = PageRun.PAGE_SIZE;

    private final PageDigests previous;
    private final PageDigests.Builder next = PageDigests.builder();
    private final Map<PagemapId, PageDigests.Cursor> cursors = new HashMap<>();
    private final AtomicLong changed = new AtomicLong();
    private final AtomicLong unchanged = new AtomicLong();
    private final AtomicLong hashNanos = new AtomicLong();

    /** @param previous the parent dump's digests; {@link PageDigests#empty()} makes every page "changed" */
    public ChangeDetector(PageDigests previous) {
        this.previous = Objects.requireNonNull(previous, "previous");
    }

    /** The parent's digests this detector compares against. */
    public PageDigests previous() {
        return previous;
    }

    /**
     * A reader that reads through {@code reader} and classifies every chunk before handing it on.
     * Closing it closes {@code reader}.
     */
    public ChunkReader wrap(ChunkReader reader) {
        return ChunkReader.mapping(reader, this::classify);
    }

    /**
     * Re-labels the runs of {@code chunk}, which a reader just filled into {@code buffer}: unchanged
     * pages become PE_PARENT runs. The result takes over the chunk's single buffer reference; {@code chunk}
     * itself must not be used or released afterwards.
     *
     * @throws IllegalArgumentException if {@code chunk} is not the only view of {@code buffer}
     */
    public PageChunk classify(PageChunk chunk, PooledBuffer buffer) {
        if (chunk.address() != buffer.address() || chunk.isReleased()) {
            throw new IllegalArgumentException("chunk " + chunk.sequence() + " does not wrap the buffer it was read into");
        }
        long t0 = System.nanoTime();
        ByteBuffer data = chunk.data().order(ByteOrder.LITTLE_ENDIAN);
        List<PageRun> out = new ArrayList<>(chunk.runs().size() + 4);
        long changedHere = 0;
        long unchangedHere = 0;
        int offset = 0;
        for (PageRun run : chunk.runs()) {
            PageDigests.Cursor cursor = cursors.computeIfAbsent(run.pagemap(), previous::cursor);
            long segmentStart = 0;
            boolean segmentHole = false;
            for (long p = 0; p < run.pages(); p++) {
                long vaddr = run.pagemapVaddr() + p * PAGE;
                long digest = XxHash64.hash(data, offset + (int) (p * PAGE), PAGE, 0);
                next.add(run.pagemap(), vaddr, digest);
                boolean hole = cursor.find(vaddr) && cursor.digest() == digest;
                if (hole) {
                    unchangedHere++;
                } else {
                    changedHere++;
                }
                if (p == 0) {
                    segmentHole = hole;
                } else if (hole != segmentHole) {
                    out.add(segment(run, segmentStart, p - segmentStart, segmentHole));
                    segmentStart = p;
                    segmentHole = hole;
                }
            }
            out.add(segment(run, segmentStart, run.pages() - segmentStart, segmentHole));
            offset += (int) run.bytes();
        }
        changed.addAndGet(changedHere);
        unchanged.addAndGet(unchangedHere);
        hashNanos.addAndGet(System.nanoTime() - t0);
        // the reader's chunk holds the buffer's one reference: the new chunk takes it over, the old view is dropped
        return PageChunk.of(buffer, chunk.bytes(), out, chunk.sequence());
    }

    private static PageRun segment(PageRun run, long from, long count, boolean hole) {
        PageRun piece = from == 0 && count == run.pages() ? run : run.slice(from, count);
        return hole ? new PageRun(piece.address(), piece.pages(), piece.pagemap(), piece.pagemapVaddr(),
                PageFlags.PE_PARENT) : piece;
    }

    /** Pages that differ from the parent (or are not in it): written with PE_PRESENT. */
    public long changedPages() {
        return changed.get();
    }

    /** Pages equal to the parent's: written as PE_PARENT holes. */
    public long unchangedPages() {
        return unchanged.get();
    }

    /** Time spent hashing and comparing, over all chunks. */
    public Duration hashTime() {
        return Duration.ofNanos(hashNanos.get());
    }

    /**
     * The digests of every page classified so far (changed or not), labelled with the dump they
     * describe; after the stream completed, these describe the whole dump. Write them next to its images
     * with {@link PageDigests#write}.
     */
    public PageDigests digests(int pid, long dumpUptimeMicros) {
        return next.build(pid, dumpUptimeMicros);
    }
}
