package io.pageflux.pipeline;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.SinkResult;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.DumpStats;
import io.pageflux.source.LiveChunkReader;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.MemorySource;
import io.pageflux.source.PageChunk;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.RegionPolicy;
import io.pageflux.source.freeze.FreezingSource;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.function.Consumer;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.util.context.Context;
import io.pageflux.sink.compress.CompressionOptions;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * One dump of a {@link MemorySource} into one or more {@link PageSink}s, configured as an
 * immutable value: every {@code withX}-style method returns a modified copy, so a configured
 * {@code Dump} can be shared and run many times.
 *
 * <pre>{@code
 * DumpReport report = Dump.of(LiveProcess.attach(pid))
 *         .regions(RegionPolicy.criuFullDump())
 *         .budget(DataSize.ofMebibytes(64))
 *         .to(PageSinks.criuImages(Path.of("/tmp/d1")))
 *         .run()
 *         .block();
 * }</pre>
 *
 * <p><b>Memory.</b> Each run creates its own {@link BufferPool} of {@code budget / chunkSize}
 * direct buffers; the source reads only when a sink has requested a chunk and a buffer is free,
 * so the pages in flight never exceed the budget, whatever the target's size.
 */
public final class Dump {

    /** Default buffer budget: 16 chunks of 4 MiB. */
    public static final DataSize DEFAULT_BUDGET = DataSize.ofMebibytes(64);
    /** Default chunk size, the size of one {@code process_vm_readv} batch. */
    public static final DataSize DEFAULT_CHUNK_SIZE = DataSize.ofMebibytes(4);

    private final MemorySource source;
    private final RegionPolicy policy;
    private final DataSize budget;
    private final DataSize chunkSize;
    private final int maxRunsPerRead;
    private final Scheduler scheduler;
    private final List<PageSink> sinks;
    private final boolean preDump;
    private final Duration progressInterval;
    private final Consumer<DumpProgress> progressListener;
    private final int readThreads;

    private Dump(MemorySource source, RegionPolicy policy, DataSize budget, DataSize chunkSize, int maxRunsPerRead,
                 Scheduler scheduler, List<PageSink> sinks, boolean preDump, Duration progressInterval,
                 Consumer<DumpProgress> progressListener, int readThreads) {
        this.source = source;
        this.policy = policy;
        this.budget = budget;
        this.chunkSize = chunkSize;
        this.maxRunsPerRead = maxRunsPerRead;
        this.scheduler = scheduler;
        this.sinks = sinks;
        this.preDump = preDump;
        this.progressInterval = progressInterval;
        this.progressListener = progressListener;
        this.readThreads = readThreads;
    }

    /**
     * A dump of {@code source} with the defaults: CRIU's full-dump selection, a 64 MiB budget of
     * 4 MiB chunks, 1024 runs per read, reads on {@link Schedulers#boundedElastic()}, no sink yet.
     */
    public static Dump of(MemorySource source) {
        return new Dump(Objects.requireNonNull(source, "source"), null, DEFAULT_BUDGET, DEFAULT_CHUNK_SIZE,
                ReadOptions.MAX_IOVECS, Schedulers.boundedElastic(), List.of(), false, null, null, 1);
    }

    /**
     * Which regions and pages to dump. Unset, it is {@link RegionPolicy#criuFullDump()}, or
     * {@link RegionPolicy#criuPreDump()} for a {@link #preDump(boolean) pre-dump}.
     */
    public Dump regions(RegionPolicy policy) {
        return new Dump(source, Objects.requireNonNull(policy, "policy"), budget, chunkSize, maxRunsPerRead,
                scheduler, sinks, preDump, progressInterval, progressListener, readThreads);
    }

    /** The most memory the dump's page buffers may take; a whole number of chunks is used. */
    public Dump budget(DataSize budget) {
        return new Dump(source, policy, Objects.requireNonNull(budget, "budget"), chunkSize, maxRunsPerRead,
                scheduler, sinks, preDump, progressInterval, progressListener, readThreads);
    }

    /** Bytes per chunk (one pooled buffer, one read batch): a multiple of the page size. Default 4 MiB. */
    public Dump chunkSize(DataSize chunkSize) {
        return new Dump(source, policy, budget, Objects.requireNonNull(chunkSize, "chunkSize"), maxRunsPerRead,
                scheduler, sinks, preDump, progressInterval, progressListener, readThreads);
    }

    /** Remote iovecs per {@code process_vm_readv} call, 1..1024 (default 1024). */
    public Dump maxRunsPerRead(int maxRunsPerRead) {
        if (maxRunsPerRead < 1 || maxRunsPerRead > ReadOptions.MAX_IOVECS) {
            throw new IllegalArgumentException("maxRunsPerRead must be 1.." + ReadOptions.MAX_IOVECS + ": "
                    + maxRunsPerRead);
        }
        return new Dump(source, policy, budget, chunkSize, maxRunsPerRead, scheduler, sinks, preDump,
                progressInterval, progressListener, readThreads);
    }

    /**
     * Where reads (blocking system calls), the scan and progress ticks run. Default
     * {@link Schedulers#boundedElastic()}; tests pass a {@code VirtualTimeScheduler}.
     */
    public Dump scheduler(Scheduler scheduler) {
        return new Dump(source, policy, budget, chunkSize, maxRunsPerRead,
                Objects.requireNonNull(scheduler, "scheduler"), sinks, preDump, progressInterval, progressListener,
                readThreads);
    }

    /**
     * Where the pages go. Several sinks receive the same chunks (shared, reference-counted
     * buffers, not copies); the dump goes as fast as the slowest. Replaces earlier sinks.
     */
    public Dump to(PageSink... sinks) {
        if (sinks.length == 0) {
            throw new IllegalArgumentException("at least one sink is needed, e.g. PageSinks.nullSink()");
        }
        return new Dump(source, policy, budget, chunkSize, maxRunsPerRead, scheduler, List.of(sinks), preDump,
                progressInterval, progressListener, readThreads);
    }

    /**
     * A pre-dump: the sinks write a pre-dump inventory, and unless {@link #regions(RegionPolicy)}
     * was given, CRIU's read-mode pre-dump selection is used (readable regions only).
     */
    public Dump preDump(boolean preDump) {
        return new Dump(source, policy, budget, chunkSize, maxRunsPerRead, scheduler, sinks, preDump,
                progressInterval, progressListener, readThreads);
    }

    /**
     * Calls {@code listener} every {@code interval} while a run is in progress (on the dump's
     * scheduler), and once more with {@link DumpProgress#finished()} set when it completed.
     * The listener must be quick and must not block.
     */
    public Dump progress(Duration interval, Consumer<DumpProgress> listener) {
        if (interval.isNegative() || interval.isZero()) {
            throw new IllegalArgumentException("progress interval must be positive: " + interval);
        }
        return new Dump(source, policy, budget, chunkSize, maxRunsPerRead, scheduler, sinks, preDump,
                interval, Objects.requireNonNull(listener, "listener"), readThreads);
    }

    /**
     * Threads that copy each large read batch of a live process at once, 1..16 (default 1). Two copy
     * almost twice as fast when a second core is free; they also take that core from the target and
     * the sinks. See {@link ReadOptions#readThreads()}; sources other than {@code LiveProcess} ignore it.
     */
    public Dump readThreads(int readThreads) {
        if (readThreads < 1 || readThreads > LiveChunkReader.MAX_READ_THREADS) {
            throw new IllegalArgumentException("readThreads must be 1.." + LiveChunkReader.MAX_READ_THREADS + ": "
                    + readThreads);
        }
        return new Dump(source, policy, budget, chunkSize, maxRunsPerRead, scheduler, sinks, preDump,
                progressInterval, progressListener, readThreads);
    }

    public MemorySource source() {
        return source;
    }

    /** The policy a run uses (the preset for the dump kind when none was set). */
    public RegionPolicy policy() {
        if (policy != null) {
            return policy;
        }
        return preDump ? RegionPolicy.criuPreDump() : RegionPolicy.criuFullDump();
    }

    public DataSize budget() {
        return budget;
    }

    public DataSize chunkSize() {
        return chunkSize;
    }

    public List<PageSink> sinks() {
        return sinks;
    }

    public boolean isPreDump() {
        return preDump;
    }

    /**
     * Runs the dump when subscribed: reads the target's regions, then streams its pages into the
     * sink(s) and completes with the report once every sink has committed its output. Each
     * subscription is a separate dump with its own pool and counters.
     *
     * <p>Backpressure comes from the sinks' requests; chunks dropped anywhere in the chain are
     * released ({@code doOnDiscard}). Cancelling the returned {@code Mono} cancels the read and
     * makes the sinks abort (nothing complete-looking is left); on error the pool gets every
     * buffer back as well. When the run ends, however it ends, its pool is
     * {@linkplain BufferPool#close() closed}: the buffers' memory is returned to the system then,
     * not at some later GC.
     *
     * @throws IllegalArgumentException at once, before the target is touched, when the budget
     *                                  holds less than one chunk or the chunk size is invalid
     * @throws IllegalStateException    when no sink was given
     */
    public Mono<DumpReport> run() {
        if (sinks.isEmpty()) {
            throw new IllegalStateException("no sink: call to(...) first, e.g. to(PageSinks.nullSink())");
        }
        // validates budget and chunk size now; buffers are allocated lazily, so this costs nothing
        BufferPool.create(budget, chunkSize);
        RegionPolicy effectivePolicy = policy();
        return Mono.defer(() -> {
            BufferPool pool = BufferPool.create(budget, chunkSize);
            DumpStats stats = new DumpStats();
            // the total of pages up front is only for progress listeners: without one, skip the counting pass
            ReadOptions options = new ReadOptions(effectivePolicy, pool, maxRunsPerRead, scheduler, stats)
                    .withCountPlanned(progressListener != null)
                    .withReadThreads(readThreads);
            long started = System.nanoTime();
            Disposable[] ticker = {null};
            return Mono.fromCallable(this::context)
                    .subscribeOn(scheduler)
                    .doOnSubscribe(s -> ticker[0] = startProgress(stats, pool, started))
                    // the source scans the regions the context was made of: smaps is read once per dump
                    .flatMap(context -> write(context, source.pages(options.withRegions(context.regions())))
                            // sinks that need buffers of their own (compression) lease them from the
                            // dump's pool, so their memory counts against the same budget
                            .contextWrite(Context.of(CompressionOptions.POOL_CONTEXT_KEY, pool)))
                    .map(results -> report(stats, pool, results, Duration.ofNanos(System.nanoTime() - started)))
                    .doOnNext(r -> {
                        stopProgress(ticker[0]);
                        if (progressListener != null) {
                            progressListener.accept(snapshot(stats, pool, started, true));
                        }
                    })
                    // frees the buffers now rather than at some GC (huge-page buffers are not counted
                    // as direct memory, so nothing would trigger one): free buffers are unmapped at once,
                    // any a sink or helper thread still holds when it releases it. On completion and
                    // error before the caller sees the signal (doFinally runs after it: a caller back
                    // from block() would still find the memory mapped); on cancel in doFinally.
                    .doOnTerminate(pool::close)
                    .doFinally(signal -> {
                        stopProgress(ticker[0]);
                        pool.close();
                    });
        }).doOnDiscard(PageChunk.class, PageChunk::release);
    }

    private DumpContext context() {
        List<MemoryRegion> regions = source.regions();
        return new DumpContext(source.pid(), regions, uptimeMicros(), preDump, Optional.empty());
    }

    /** Feeds the chunks to the sink, or to every sink through one shared, reference-counted stream. */
    private Mono<List<SinkResult>> write(DumpContext context, Flux<PageChunk> chunks) {
        Flux<PageChunk> released = chunks.doOnDiscard(PageChunk.class, PageChunk::release);
        if (sinks.size() == 1) {
            return sinks.get(0).write(context, released).map(List::of);
        }
        return Tee.write(sinks, context, released);
    }

    private Disposable startProgress(DumpStats stats, BufferPool pool, long started) {
        if (progressListener == null) {
            return null;
        }
        return Flux.interval(progressInterval, progressInterval, scheduler)
                .subscribe(tick -> progressListener.accept(snapshot(stats, pool, started, false)));
    }

    private static void stopProgress(Disposable ticker) {
        if (ticker != null) {
            ticker.dispose();
        }
    }

    private DumpProgress snapshot(DumpStats stats, BufferPool pool, long started, boolean finished) {
        // a freezing source knows how long it has kept the target stopped; other sources never stop it
        Duration frozen = source instanceof FreezingSource f ? f.frozenSoFar() : Duration.ZERO;
        return new DumpProgress(stats.pagesRead(), stats.pagesPlanned(), stats.pagesVanished(),
                Duration.ofNanos(System.nanoTime() - started), pool.leasedBuffers(), finished, frozen);
    }

    private DumpReport report(DumpStats stats, BufferPool pool, List<SinkResult> results, Duration duration) {
        return new DumpReport(source.pid(), preDump, stats.regionsSeen(), stats.regionsDumped(),
                stats.regionsSkipped(), stats.runs(), stats.pagesPlanned(), stats.pagesRead(), stats.chunksRead(),
                stats.pagesVanished(), stats.vanishedAddresses(), duration, pool.chunkSize(), pool.capacity(),
                pool.peakLeasedBuffers(), pool.waits(), results);
    }

    /** {@code /proc/uptime}'s first field in microseconds: CRIU's inventory {@code dump_uptime}. */
    static long uptimeMicros() {
        try {
            String text = Files.readString(Path.of("/proc/uptime"), StandardCharsets.US_ASCII).trim();
            String seconds = text.substring(0, text.indexOf(' '));
            return new java.math.BigDecimal(seconds).movePointRight(6).longValueExact();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read /proc/uptime for the inventory's dump_uptime: " + e, e);
        }
    }

    @Override
    public String toString() {
        return "Dump[pid=" + source.pid() + " budget=" + budget + " chunk=" + chunkSize + " preDump=" + preDump
                + " sinks=" + sinks.stream().map(PageSink::describe).toList() + "]";
    }
}
