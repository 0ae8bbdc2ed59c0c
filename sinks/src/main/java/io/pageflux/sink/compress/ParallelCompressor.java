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
import java.util.concurrent.atomic.AtomicReference;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.MonoSink;

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
     * CompressedChunk::release)} below any operator that can drop elements, and track chunks
     * across a {@code publishOn} with {@link InFlight} (a cancelled {@code publishOn} may drop its
     * queue silently). Chunks and buffers held inside this operator on cancel or error are
     * released here.
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
                    Live live = new Live();
                    return chunks
                            .flatMapSequential(chunk -> compressOne(chunk, pool, options, frames, live),
                                    options.concurrency(pool), 1)
                            .doOnNext(live::handOver)
                            .doFinally(signal -> {
                                live.close();
                                frames.close();
                            });
                })
                .doOnDiscard(PageChunk.class, PageChunk::release)
                .doOnDiscard(CompressedChunk.class, CompressedChunk::release);
    }

    /**
     * The task owns {@code chunk} from here on, before the returned Mono is subscribed to:
     * {@code flatMapSequential} maps a chunk and then silently drops the Mono (never subscribing)
     * when a cancel races with its {@code onNext}, so the chunk must not depend on that
     * subscription to be released. {@link Live} holds the task until it ends and cancels it when
     * the stream ends; a task created after that is cancelled at once.
     */
    private static Mono<CompressedChunk> compressOne(PageChunk chunk, BufferPool pool, CompressionOptions options,
                                                     FramesPool frames, Live live) {
        Task task = new Task(chunk, pool, options, frames, live);
        if (!live.addTask(task)) {
            task.cancel(); // the stream already ended: release the chunk now
        }
        return Mono.create(task::start);
    }

    /**
     * One chunk's compression: waits (without a thread) for an output buffer from the pool, then
     * compresses on the options' scheduler. Written by hand rather than with {@code publishOn}
     * because a cancelled {@code Mono.publishOn} forgets a value it holds without discarding it;
     * here a state machine decides who releases the input chunk and the output buffer — exactly
     * once, whether the task completes, fails, or is cancelled at any point.
     */
    private static final class Task {
        private static final int WAITING = 0;   // no output buffer yet
        private static final int LEASED = 1;    // output buffer in hand, compression scheduled
        private static final int RUNNING = 2;   // compressing: run() releases everything
        private static final int DONE = 3;
        private static final int CANCELLED = 4; // cancel() released what existed

        private final PageChunk chunk;
        private final BufferPool pool;
        private final CompressionOptions options;
        private final FramesPool frames;
        private final Live live;
        private volatile MonoSink<CompressedChunk> sink;
        private final AtomicInteger state = new AtomicInteger(WAITING);
        private final AtomicReference<PooledBuffer> out = new AtomicReference<>();
        private volatile Disposable listener;

        Task(PageChunk chunk, BufferPool pool, CompressionOptions options, FramesPool frames, Live live) {
            this.chunk = chunk;
            this.pool = pool;
            this.options = options;
            this.frames = frames;
            this.live = live;
        }

        /** Subscribed: from now on the sink's cancel also cancels the task (at once if already cancelled). */
        void start(MonoSink<CompressedChunk> sink) {
            this.sink = sink;
            sink.onCancel(this::cancel);
            if (attempt()) {
                return;
            }
            // register before retrying, so that a buffer returned in between is not missed
            listener = pool.onRelease(this::attempt);
            if (state.get() != WAITING) {
                listener.dispose();
            } else {
                attempt();
            }
        }

        /** Tries to take an output buffer; true once the task no longer waits for one. */
        private boolean attempt() {
            if (state.get() != WAITING) {
                return true;
            }
            if (pool.isClosed()) {
                // the dump that owns the pool has ended: nothing more will be compressed, give the input back
                cancel();
                return true;
            }
            PooledBuffer b;
            try {
                b = pool.tryAcquire();
            } catch (IllegalStateException closedJustNow) {
                if (!pool.isClosed()) {
                    throw closedJustNow;
                }
                cancel();
                return true;
            }
            if (b == null) {
                return false;
            }
            if (!out.compareAndSet(null, b)) {
                b.release(); // another attempt (a concurrent release callback) was first
                return true;
            }
            if (!state.compareAndSet(WAITING, LEASED)) {
                b.release(); // cancelled meanwhile; cancel() released the input
                return true;
            }
            Disposable l = listener;
            if (l != null) {
                l.dispose();
            }
            options.scheduler().schedule(this::run);
            return true;
        }

        private void run() {
            if (!state.compareAndSet(LEASED, RUNNING)) {
                return; // cancelled: cancel() released both
            }
            PooledBuffer buffer = out.get();
            Frames f = frames.borrow();
            CompressedChunk result;
            try {
                result = compressChunk(chunk, buffer, f, options.frameBytes());
            } catch (RuntimeException | Error e) {
                buffer.release();
                sink.error(e);
                return;
            } finally {
                frames.giveBack(f);
                chunk.release();
                state.set(DONE);
                live.removeTask(this);
            }
            if (live.add(result)) {
                // if the subscriber cancelled just now, Reactor discards the value and the
                // registry releases it when the stream ends; release is idempotent
                sink.success(result);
            } else {
                result.release(); // the stream ended while this chunk was being compressed
            }
        }

        /** Idempotent; a no-op once compression has started (run() then releases everything). */
        void cancel() {
            int s = state.getAndUpdate(x -> x == WAITING || x == LEASED ? CANCELLED : x);
            if (s == WAITING || s == LEASED) {
                live.removeTask(this);
            }
            if (s == WAITING) {
                Disposable l = listener;
                if (l != null) {
                    l.dispose();
                }
                chunk.release();
            } else if (s == LEASED) {
                out.get().release();
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

    /**
     * The tasks not yet finished and the compressed chunks that exist but were not yet handed to
     * the subscriber. Reactor drops values that race with a cancel (a result arriving in an inner
     * queue just as it is cancelled; a chunk mapped to a task whose Mono is then never subscribed)
     * without discarding them; this registry makes sure they go back to the pool: when the stream
     * ends, every unfinished task is cancelled and whatever was not handed over is released, and
     * anything created or finished afterwards is released at once.
     */
    static final class Live {
        private final java.util.Set<CompressedChunk> chunks = java.util.Collections.newSetFromMap(
                new java.util.IdentityHashMap<>());
        private final java.util.Set<Task> tasks = java.util.Collections.newSetFromMap(
                new java.util.IdentityHashMap<>());
        private boolean closed;

        /** @return false (caller cancels the task) if the stream has already ended */
        synchronized boolean addTask(Task t) {
            if (closed) {
                return false;
            }
            tasks.add(t);
            return true;
        }

        synchronized void removeTask(Task t) {
            tasks.remove(t);
        }

        /** @return false (caller releases) if the stream has already ended */
        synchronized boolean add(CompressedChunk c) {
            if (closed) {
                return false;
            }
            chunks.add(c);
            return true;
        }

        /** The subscriber owns {@code c} from now on. */
        synchronized void handOver(CompressedChunk c) {
            chunks.remove(c);
        }

        void close() {
            List<CompressedChunk> left;
            List<Task> unfinished;
            synchronized (this) {
                closed = true;
                left = new ArrayList<>(chunks);
                chunks.clear();
                unfinished = new ArrayList<>(tasks);
                tasks.clear();
            }
            // a task already compressing releases its chunk itself, and its result via add()
            unfinished.forEach(Task::cancel);
            left.forEach(CompressedChunk::release);
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
