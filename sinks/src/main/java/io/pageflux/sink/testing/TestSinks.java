package io.pageflux.sink.testing;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.SinkResult;
import io.pageflux.source.DataSize;
import io.pageflux.source.PageChunk;
import io.pageflux.source.testing.InjectedFaultException;
import java.math.BigInteger;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicLong;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * Sink decorators for testing a dump pipeline under pressure: a sink that accepts only so many
 * bytes per second, one that stalls for a while, one that fails after some chunks. They wrap any
 * {@link PageSink} (e.g. {@code PageSinks.nullSink()}) and time themselves on a Reactor
 * {@link Scheduler}, so with a {@code VirtualTimeScheduler} a dump of 64 GiB at 200 MiB/s takes
 * 327.68 s of virtual time and a few seconds of real time.
 *
 * <p><b>Ownership.</b> A decorator hands each chunk on to its delegate, which releases it; a
 * chunk the decorator still holds when the dump is cancelled or fails is released through the
 * discard hook; a chunk it refuses ({@link #failingAfter}) it releases itself.
 */
public final class TestSinks {

    private TestSinks() {
    }

    /**
     * {@code delegate}, but taking {@code bytes / perSecond} seconds for every chunk before
     * handing it on, one chunk after the other, timed on {@code scheduler}. Like a disk or
     * network link of that speed, it requests the next chunk while one is being "written", so
     * it holds at most two chunks: reading overlaps writing, and a dump of {@code N} bytes takes
     * {@code N / perSecond} when the source is faster.
     */
    public static PageSink throttled(PageSink delegate, DataSize perSecond, Scheduler scheduler) {
        Objects.requireNonNull(delegate, "delegate");
        Objects.requireNonNull(scheduler, "scheduler");
        if (perSecond.bytes() <= 0) {
            throw new IllegalArgumentException("throttle rate must be positive: perSecond=" + perSecond);
        }
        String description = "throttled(" + perSecond + "/s) " + delegate.describe();
        return sink(description, (context, chunks) -> Mono.defer(() -> {
            Throttle throttle = new Throttle(perSecond.bytes());
            return delegate.write(context, holdEach(chunks, c -> throttle.nanosFor(c.bytes()), scheduler));
        }));
    }

    /** {@link #throttled(PageSink, DataSize, Scheduler)} timed on {@link Schedulers#parallel()} (virtual in {@code StepVerifier.withVirtualTime}). */
    public static PageSink throttled(PageSink delegate, DataSize perSecond) {
        return throttled(delegate, perSecond, Schedulers.parallel());
    }

    /**
     * {@code delegate}, but holding chunk number {@code afterChunks} (0 = the first) for
     * {@code stall} before handing it on; the others pass straight through. The dump therefore
     * finishes {@code stall} later than it would, and meanwhile the source stops at its budget.
     */
    public static PageSink stalled(PageSink delegate, long afterChunks, Duration stall, Scheduler scheduler) {
        Objects.requireNonNull(delegate, "delegate");
        Objects.requireNonNull(scheduler, "scheduler");
        if (afterChunks < 0 || stall.isNegative()) {
            throw new IllegalArgumentException("stall needs afterChunks >= 0 and a non-negative duration: afterChunks="
                    + afterChunks + " stall=" + stall);
        }
        String description = "stalled(" + stall + " at chunk " + afterChunks + ") " + delegate.describe();
        return sink(description, (context, chunks) -> Mono.defer(() -> {
            AtomicLong seen = new AtomicLong();
            long nanos = stall.toNanos();
            return delegate.write(context,
                    holdEach(chunks, c -> seen.getAndIncrement() == afterChunks ? nanos : 0, scheduler));
        }));
    }

    /** {@link #stalled(PageSink, long, Duration, Scheduler)} timed on {@link Schedulers#parallel()}. */
    public static PageSink stalled(PageSink delegate, long afterChunks, Duration stall) {
        return stalled(delegate, afterChunks, stall, Schedulers.parallel());
    }

    /**
     * {@code delegate}, but failing on chunk number {@code chunks} (after passing {@code chunks}
     * chunks on): that chunk is released and the delegate's input fails with an
     * {@link InjectedFaultException} naming the sink and the count, which cancels the source.
     * A delegate that propagates input errors (every {@link PageSink} should) fails with it.
     */
    public static PageSink failingAfter(PageSink delegate, long chunks) {
        Objects.requireNonNull(delegate, "delegate");
        if (chunks < 0) {
            throw new IllegalArgumentException("failingAfter needs chunks >= 0: chunks=" + chunks);
        }
        String description = "failing(after " + chunks + " chunks) " + delegate.describe();
        return sink(description, (context, input) -> Mono.defer(() -> {
            AtomicLong seen = new AtomicLong();
            Flux<PageChunk> failing = input.handle((chunk, sink) -> {
                if (seen.getAndIncrement() < chunks) {
                    sink.next(chunk);
                } else {
                    chunk.release();
                    sink.error(new InjectedFaultException("sink failed: sink='" + description + "' chunks=" + chunks
                            + " chunk=" + chunk.sequence() + " (injected fault: TestSinks.failingAfter)"));
                }
            });
            return delegate.write(context, failing.doOnDiscard(PageChunk.class, PageChunk::release));
        }));
    }

    /**
     * Passes each chunk on after {@code nanos(chunk)} on {@code scheduler}, in order, holding the
     * one being delayed and at most one more (prefetch 1).
     */
    private static Flux<PageChunk> holdEach(Flux<PageChunk> chunks, java.util.function.ToLongFunction<PageChunk> nanos,
                                            Scheduler scheduler) {
        return chunks
                .concatMap(chunk -> {
                    long delay = nanos.applyAsLong(chunk);
                    return delay <= 0 ? Mono.just(chunk)
                            : Mono.just(chunk).delayElement(Duration.ofNanos(delay), scheduler);
                }, 1)
                // chunks held in the delay or queued when the dump is cancelled or fails
                .doOnDiscard(PageChunk.class, PageChunk::release);
    }

    /** Service time per chunk at a fixed rate, carrying the rounding remainder so no time is lost over millions of chunks. */
    private static final class Throttle {
        private static final BigInteger NANOS_PER_SECOND = BigInteger.valueOf(1_000_000_000L);
        private final BigInteger rate;
        private BigInteger remainder = BigInteger.ZERO;

        Throttle(long bytesPerSecond) {
            this.rate = BigInteger.valueOf(bytesPerSecond);
        }

        synchronized long nanosFor(long bytes) {
            BigInteger[] qr = BigInteger.valueOf(bytes).multiply(NANOS_PER_SECOND).add(remainder).divideAndRemainder(rate);
            remainder = qr[1];
            return qr[0].longValueExact();
        }
    }

    @FunctionalInterface
    private interface Write {
        Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks);
    }

    private static PageSink sink(String description, Write write) {
        return new PageSink() {
            @Override
            public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
                return write.write(context, chunks);
            }

            @Override
            public String describe() {
                return description;
            }

            @Override
            public String toString() {
                return description;
            }
        };
    }
}
