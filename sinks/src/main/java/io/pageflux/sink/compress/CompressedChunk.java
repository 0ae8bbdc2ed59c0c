package io.pageflux.sink.compress;

import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.PooledBuffer;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * One {@link io.pageflux.source.PageChunk} after compression: its runs, grouped by pagemap into
 * {@link Segment}s, and the frames holding the bytes of their PE_PRESENT pages. The payloads live
 * in one buffer leased from the dump's {@link io.pageflux.source.BufferPool}, so a compressed
 * chunk costs one pool buffer until {@link #release()}d — whoever holds it last releases it, also
 * on error and cancel.
 */
public final class CompressedChunk {

    /**
     * Consecutive runs of the chunk that belong to one pagemap, and the frames carrying the bytes
     * of those with PE_PRESENT, in order (runs without PE_PRESENT carry none).
     */
    public record Segment(PagemapId pagemap, List<PageRun> runs, List<Frame> frames) {
        public Segment {
            runs = List.copyOf(runs);
            frames = List.copyOf(frames);
        }

        /** Raw bytes of the frames = 4096 x PE_PRESENT pages of the runs. */
        public long rawBytes() {
            long n = 0;
            for (Frame f : frames) {
                n += f.header().rawLength();
            }
            return n;
        }
    }

    /** A frame's header and where its payload starts in the chunk's output buffer. */
    public record Frame(FrameHeader header, int offset) {
    }

    private final long sequence;
    private final List<Segment> segments;
    private final PooledBuffer out;
    private final AtomicBoolean released = new AtomicBoolean();

    CompressedChunk(long sequence, List<Segment> segments, PooledBuffer out) {
        this.sequence = sequence;
        this.segments = List.copyOf(segments);
        this.out = out;
    }

    /** The source chunk's sequence number. */
    public long sequence() {
        return sequence;
    }

    public List<Segment> segments() {
        return segments;
    }

    /** A read-only view of {@code frame}'s stored payload (position 0, limit = stored length). */
    public ByteBuffer payload(Frame frame) {
        if (released.get()) {
            throw new IllegalStateException("compressed chunk " + sequence + " was already released");
        }
        return out.buffer().asReadOnlyBuffer().limit(frame.offset() + frame.header().storedLength())
                .position(frame.offset()).slice();
    }

    /** Raw bytes over all segments. */
    public long rawBytes() {
        long n = 0;
        for (Segment s : segments) {
            n += s.rawBytes();
        }
        return n;
    }

    /** Stored payload bytes over all frames (headers not included). */
    public long storedBytes() {
        long n = 0;
        for (Segment s : segments) {
            for (Frame f : s.frames()) {
                n += f.header().storedLength();
            }
        }
        return n;
    }

    /** Gives the output buffer back to the pool; a second call does nothing. */
    public void release() {
        if (released.compareAndSet(false, true)) {
            out.release();
        }
    }

    public boolean isReleased() {
        return released.get();
    }

    @Override
    public String toString() {
        return "CompressedChunk[#" + sequence + " " + segments.size() + " segments, raw=" + rawBytes() + " stored="
                + storedBytes() + (released.get() ? ", released" : "") + "]";
    }
}
