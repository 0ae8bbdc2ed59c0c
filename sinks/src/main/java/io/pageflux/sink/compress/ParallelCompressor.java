package io.pageflux.sink.compress;

import io.pageflux.source.BufferPool;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.PooledBuffer;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Compresses a stream of page chunks on several cores at once and hands the results on in the
 * chunks' order.
 */
public final class ParallelCompressor {

    private ParallelCompressor() {
    }

    /**
     * Compresses each chunk into frames of at most {@link CompressionOptions#framePages()} pages
     * (cut at pagemap changes and around runs without PE_PRESENT), up to
     * {@link CompressionOptions#concurrency(BufferPool)} chunks at once on the options' scheduler, and
     * emits them in the order of {@code chunks}.
     *
     * <p><b>Backpressure.</b> Requests at most {@code concurrency} chunks ahead; requests the next
     * one only after the oldest compressed chunk went downstream, so a slow consumer (a slow disk)
     * stops the reader instead of piling up output.
     *
     * <p><b>Ownership.</b> Each input chunk is released right after it is compressed (also when
     * compression fails or the subscription is cancelled). Each emitted {@link CompressedChunk}
     * holds one buffer leased from {@link CompressionOptions#pool()} and belongs to the
     * subscriber, which must release it; add {@code doOnDiscard(CompressedChunk.class,
     * CompressedChunk::release)} below any operator that can drop elements. Chunks and buffers
     * dropped inside this operator on cancel or error are released here.
     *
     * <p>The output pool is {@link CompressionOptions#pool(reactor.util.context.ContextView)}; without
     * one the returned flux errors without subscribing to {@code chunks}.
     *
     * @throws IllegalArgumentException (as an error signal) if a chunk holds more bytes than a pool buffer
     */
    public static Flux<CompressedChunk> compress(Flux<PageChunk> chunks, CompressionOptions options) {
        return Flux.deferContextual(context -> {
                    BufferPool pool;
                    try {
                        pool = options.pool(context);
                    } catch (IllegalStateException e) {
                        // fail before subscribing to the chunks: none is read, none to release
                        return Flux.<CompressedChunk>error(e);
                    }
                    FramesPool frames = new FramesPool(options.codec());
                    return chunks
                            .flatMapSequential(chunk -> compressOne(chunk, pool, options, frames),
                                    options.concurrency(pool), 1)
                            .doFinally(signal -> frames.close());
                })
                .doOnDiscard(PooledBuffer.class, PooledBuffer::release)
                .doOnDiscard(PageChunk.class, PageChunk::release)
                .doOnDiscard(CompressedChunk.class, CompressedChunk::release);
    }

    private static Mono<CompressedChunk> compressOne(PageChunk chunk, BufferPool pool, CompressionOptions options,
                                                     FramesPool frames) {
        Task task = new Task(chunk, options, frames);
        return PoolLease.acquire(pool)
                .publishOn(options.scheduler())
                .<CompressedChunk>handle((out, sink) -> {
                    CompressedChunk result = task.run(out);
                    if (result != null) {
                        sink.next(result);
                    }
                })
                .doFinally(signal -> task.cancel());
    }

    /** One chunk's compression; makes sure the input chunk is released exactly once, whatever happens. */
    private static final class Task {
        private static final int IDLE = 0;
        private static final int RUNNING = 1;
        private static final int DONE = 2;

        private final PageChunk chunk;
        private final CompressionOptions options;
        private final FramesPool frames;
        private final AtomicInteger state = new AtomicInteger(IDLE);

        Task(PageChunk chunk, CompressionOptions options, FramesPool frames) {
            this.chunk = chunk;
            this.options = options;
            this.frames = frames;
        }

        /** Compresses into {@code out}, or returns {@code null} (releasing {@code out}) if cancelled first. */
        CompressedChunk run(PooledBuffer out) {
            if (!state.compareAndSet(IDLE, RUNNING)) {
                out.release();
                return null;
            }
            Frames f = frames.borrow();
            try {
                return compressChunk(chunk, out, f, options.frameBytes());
            } catch (RuntimeException | Error e) {
                out.release();
                throw e;
            } finally {
                frames.giveBack(f);
                chunk.release();
                state.set(DONE);
            }
        }

        /** Releases the chunk if compression never started. */
        void cancel() {
            if (state.compareAndSet(IDLE, DONE)) {
                chunk.release();
            }
        }
    }

    /**
     * Cuts {@code chunk} into segments (one per stretch of runs of the same pagemap) and the
     * present bytes into frames of at most {@code frameBytes}, compressing each into {@code out}.
     */
    static CompressedChunk compressChunk(PageChunk chunk, PooledBuffer out, Frames frames, int frameBytes) {
        ByteBuffer dst = out.buffer().duplicate().clear();
        if (chunk.bytes() > dst.capacity()) {
            throw new IllegalArgumentException("chunk " + chunk.sequence() + " has bytes=" + chunk.bytes()
                    + " but compression output buffers hold " + dst.capacity()
                    + ": compress with the pool the chunks come from");
        }
        ByteBuffer data = chunk.data();
        List<CompressedChunk.Segment> segments = new ArrayList<>();
        SegmentBuilder seg = null;
        int pos = 0;
        int frameStart = -1;
        for (PageRun run : chunk.runs()) {
            if (seg == null || !seg.pagemap.equals(run.pagemap())) {
                if (seg != null) {
                    seg.flushFrame(frameStart, pos, data, dst, frames);
                    segments.add(seg.build());
                }
                seg = new SegmentBuilder(run.pagemap());
                frameStart = -1;
            }
            seg.runs.add(run);
            int runBytes = (int) run.bytes();
            if (!PageFlags.has(run.flags(), PageFlags.PE_PRESENT)) {
                // bytes of runs without PE_PRESENT do not go into the pages file
                seg.flushFrame(frameStart, pos, data, dst, frames);
                frameStart = -1;
                pos += runBytes;
                continue;
            }
            if (frameStart < 0) {
                frameStart = pos;
            }
            pos += runBytes;
            while (pos - frameStart >= frameBytes) {
                seg.flushFrame(frameStart, frameStart + frameBytes, data, dst, frames);
                frameStart += frameBytes;
            }
            if (frameStart == pos) {
                frameStart = -1;
            }
        }
        if (seg != null) {
            seg.flushFrame(frameStart, pos, data, dst, frames);
            segments.add(seg.build());
        }
        return new CompressedChunk(chunk.sequence(), segments, out);
    }

    private static final class SegmentBuilder {
        final PagemapId pagemap;
        final List<PageRun> runs = new ArrayList<>();
        final List<CompressedChunk.Frame> frames = new ArrayList<>();

        SegmentBuilder(PagemapId pagemap) {
            this.pagemap = pagemap;
        }

        /** Emits a frame for {@code data[from, to)} unless empty ({@code from < 0}). */
        void flushFrame(int from, int to, ByteBuffer data, ByteBuffer dst, Frames codec) {
            if (from < 0 || from >= to) {
                return;
            }
            int offset = dst.position();
            FrameHeader h = codec.encode(data.duplicate().limit(to).position(from), dst);
            frames.add(new CompressedChunk.Frame(h, offset));
        }

        CompressedChunk.Segment build() {
            return new CompressedChunk.Segment(pagemap, runs, frames);
        }
    }

    /** Reusable per-thread codec state (zstd contexts are worth keeping), closed when the stream ends. */
    static final class FramesPool {
        private final Codec codec;
        private final ConcurrentLinkedQueue<Frames> idle = new ConcurrentLinkedQueue<>();
        private volatile boolean closed;

        FramesPool(Codec codec) {
            this.codec = codec;
        }

        Frames borrow() {
            Frames f = idle.poll();
            return f != null ? f : new Frames(codec);
        }

        void giveBack(Frames f) {
            if (closed) {
                f.close();
                return;
            }
            idle.offer(f);
            // close() may have drained the queue just before the offer
            if (closed && idle.remove(f)) {
                f.close();
            }
        }

        void close() {
            closed = true;
            Frames f;
            while ((f = idle.poll()) != null) {
                f.close();
            }
        }
    }
}
