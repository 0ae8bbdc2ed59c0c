package io.pageflux.sink.compress;

import io.pageflux.source.BufferPool;
import io.pageflux.source.PageRun;
import java.util.Objects;
import java.util.Optional;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;
import reactor.util.context.ContextView;

/**
 * How pages are compressed. Immutable; {@code withX} returns a modified copy.
 *
 * <p><b>Memory accounting.</b> Compressed output goes into buffers leased from the dump's own
 * {@link BufferPool} — the same budget the reader fills — one buffer per chunk being compressed
 * or waiting to be written, given back as soon as that chunk's frames are written. Input chunks
 * are released right after compression. A dump with compression therefore never holds more than
 * {@link BufferPool#budget()} of page data, input and output together; compressing just leaves
 * the reader fewer buffers. So that an input chunk can always get an output buffer, at most
 * {@code capacity - 1} chunks are compressed at once and the pool needs at least two buffers.
 *
 * <p><b>Which pool.</b> The one given with {@link #withPool}, else the one in the subscriber's
 * Reactor context under {@link #POOL_CONTEXT_KEY} (how a dump pipeline that creates its pool per
 * run hands it to its sinks: {@code sink.write(ctx, chunks).contextWrite(Context.of(BufferPool.class, pool))}).
 * Without either, compression fails at subscription with an error saying so.
 */
public final class CompressionOptions {

    /** Reactor context key under which a pipeline may provide the chunks' {@link BufferPool}. */
    public static final Class<BufferPool> POOL_CONTEXT_KEY = BufferPool.class;
    /** 256 pages = 1 MiB of raw bytes per frame: seeking decompresses at most this much extra. */
    public static final int DEFAULT_FRAME_PAGES = 256;
    /** 64 MiB per frame at most, so readers' buffers stay bounded. */
    public static final int MAX_FRAME_PAGES = 16384;

    private final Codec codec;
    private final BufferPool pool;
    private final int concurrency;
    private final int framePages;
    private final Scheduler scheduler;

    private CompressionOptions(Codec codec, BufferPool pool, int concurrency, int framePages, Scheduler scheduler) {
        this.codec = Objects.requireNonNull(codec, "codec");
        this.pool = pool;
        this.scheduler = Objects.requireNonNull(scheduler, "scheduler");
        if (concurrency < 0) {
            throw new IllegalArgumentException("concurrency=" + concurrency + " must be at least 1 (0 = automatic)");
        }
        if (framePages < 1 || framePages > MAX_FRAME_PAGES) {
            throw new IllegalArgumentException("framePages=" + framePages + " must be between 1 and " + MAX_FRAME_PAGES);
        }
        this.concurrency = concurrency;
        this.framePages = framePages;
        if (pool != null) {
            check(pool);
        }
    }

    /**
     * {@code codec}, output buffers from the pool found in the Reactor context, automatic
     * concurrency, {@value #DEFAULT_FRAME_PAGES} pages per frame, compression on
     * {@link Schedulers#parallel()}.
     */
    public static CompressionOptions of(Codec codec) {
        return new CompressionOptions(codec, null, 0, DEFAULT_FRAME_PAGES, Schedulers.parallel());
    }

    /** {@link #of(Codec)} with output buffers from {@code pool}, the pool the chunks come from. */
    public static CompressionOptions of(Codec codec, BufferPool pool) {
        return of(codec).withPool(pool);
    }

    /**
     * Lease output buffers from {@code pool} (the pool the chunks come from).
     *
     * @throws IllegalArgumentException if it holds fewer than two buffers, or fewer than
     *                                  concurrency + 1
     */
    public CompressionOptions withPool(BufferPool pool) {
        return new CompressionOptions(codec, Objects.requireNonNull(pool, "pool"), concurrency, framePages, scheduler);
    }

    /** Chunks compressed at once; 0 = automatic: {@code min(cores, capacity / 2)}, at least 1. */
    public CompressionOptions withConcurrency(int concurrency) {
        return new CompressionOptions(codec, pool, concurrency, framePages, scheduler);
    }

    /** Largest frame, in pages (a chunk's pages are cut into frames of at most this many). */
    public CompressionOptions withFramePages(int framePages) {
        return new CompressionOptions(codec, pool, concurrency, framePages, scheduler);
    }

    /** Where compression runs (CPU-bound work: a parallel scheduler). */
    public CompressionOptions withScheduler(Scheduler scheduler) {
        return new CompressionOptions(codec, pool, concurrency, framePages, scheduler);
    }

    public CompressionOptions withCodec(Codec codec) {
        return new CompressionOptions(codec, pool, concurrency, framePages, scheduler);
    }

    public Codec codec() {
        return codec;
    }

    /** The pool given with {@link #withPool}, if any. */
    public Optional<BufferPool> pool() {
        return Optional.ofNullable(pool);
    }

    /**
     * The pool to lease from: the configured one, else the context's.
     *
     * @throws IllegalStateException if there is none, or it is too small (see {@link #withPool})
     */
    public BufferPool pool(ContextView context) {
        BufferPool p = pool != null ? pool : context.getOrDefault(POOL_CONTEXT_KEY, null);
        if (p == null) {
            throw new IllegalStateException("compression has no buffer pool to lease output buffers from: pass the "
                    + "pool the chunks come from with CompressionOptions.withPool(pool), or put it in the Reactor "
                    + "context under CompressionOptions.POOL_CONTEXT_KEY");
        }
        try {
            check(p);
        } catch (IllegalArgumentException e) {
            throw new IllegalStateException(e.getMessage(), e);
        }
        return p;
    }

    private void check(BufferPool p) {
        if (p.capacity() < 2) {
            throw new IllegalArgumentException("compression needs a budget of at least 2 chunks: budget="
                    + p.budget() + " chunkSize=" + p.chunkSize() + " capacity=" + p.capacity()
                    + ": raise the budget (--budget) or lower the chunk size");
        }
        if (concurrency > p.capacity() - 1) {
            throw new IllegalArgumentException("concurrency=" + concurrency + " needs at least concurrency+1="
                    + (concurrency + 1) + " pool buffers but capacity=" + p.capacity()
                    + ": each chunk being compressed needs an output buffer from the same pool; lower the "
                    + "concurrency or raise the budget");
        }
    }

    /** The effective number of chunks compressed at once with {@code pool}. */
    public int concurrency(BufferPool pool) {
        if (concurrency > 0) {
            return concurrency;
        }
        return Math.max(1, Math.min(Runtime.getRuntime().availableProcessors(), pool.capacity() / 2));
    }

    /** The configured concurrency, 0 = automatic. */
    public int concurrency() {
        return concurrency;
    }

    public int framePages() {
        return framePages;
    }

    /** {@link #framePages()} in bytes. */
    public int frameBytes() {
        return framePages * PageRun.PAGE_SIZE;
    }

    public Scheduler scheduler() {
        return scheduler;
    }

    @Override
    public String toString() {
        return "CompressionOptions[codec=" + codec + " concurrency=" + (concurrency == 0 ? "auto" : concurrency)
                + " framePages=" + framePages + (pool != null ? " pool=" + pool : "") + "]";
    }
}
