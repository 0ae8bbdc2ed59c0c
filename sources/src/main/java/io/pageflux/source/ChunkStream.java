package io.pageflux.source;

import java.time.Duration;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.FluxSink;
import reactor.core.scheduler.Scheduler;

/**
 * Turns a {@link ChunkReader} into a {@code Flux<PageChunk>} that reads <b>only on demand</b>: a
 * chunk is read when downstream has requested one <i>and</i> the {@link BufferPool} has a free
 * buffer. When either is missing the stream simply waits: a new request or a buffer coming back
 * to the pool resumes it. Nothing is read ahead, so at most {@link BufferPool#capacity()} chunks
 * exist at any moment, whatever the consumer does.
 *
 * <p>Reads run on one worker of the given scheduler (a real thread for live reads, a
 * {@code VirtualTimeScheduler} in tests). Cancel and errors release the buffer in flight and
 * close the reader; chunks already emitted belong to downstream. Chunks dropped by Reactor
 * operators between this source and the {@code doOnDiscard} applied here are released.
 *
 * <p>Completion needs neither demand nor a free buffer when the reader knows it is
 * {@linkplain ChunkReader#exhausted() exhausted}: a consumer that holds every chunk (e.g.
 * {@code collectList()} of a source exactly as big as the budget) still sees {@code onComplete}.
 * A read cost ({@link ChunkReader#cost}) delays each chunk on the scheduler's clock, so with a
 * {@code VirtualTimeScheduler} a simulated dump of any size takes its real duration in virtual time.
 */
public final class ChunkStream {

    private ChunkStream() {
    }

    /**
     * @param readerFactory creates the reader per subscription (on subscribe, not before)
     * @param pool          where buffers come from; shared pools are fine
     * @param scheduler     where reads run
     */
    public static Flux<PageChunk> from(Supplier<? extends ChunkReader> readerFactory, BufferPool pool,
                                       Scheduler scheduler) {
        return Flux.<PageChunk>create(sink -> new Drain(sink, readerFactory, pool, scheduler.createWorker()).start(),
                        FluxSink.OverflowStrategy.BUFFER)
                .doOnDiscard(PageChunk.class, PageChunk::release);
    }

    /** One subscription's state; every field below {@code disposed} is touched only on the worker. */
    private static final class Drain {
        private final FluxSink<PageChunk> sink;
        private final Supplier<? extends ChunkReader> readerFactory;
        private final BufferPool pool;
        private final Scheduler.Worker worker;
        private final AtomicInteger wip = new AtomicInteger();
        private volatile boolean disposed;
        /** Set once everything is freed: later requests and releases must not touch the disposed worker. */
        private volatile boolean finished;

        private ChunkReader reader;
        private Disposable poolListener;
        private boolean terminated;
        private PageChunk waitingForCost;
        private boolean costElapsed;
        private boolean waitingForBuffer;

        Drain(FluxSink<PageChunk> sink, Supplier<? extends ChunkReader> readerFactory, BufferPool pool,
              Scheduler.Worker worker) {
            this.sink = sink;
            this.readerFactory = readerFactory;
            this.pool = pool;
            this.worker = worker;
        }

        void start() {
            poolListener = pool.onRelease(this::schedule);
            sink.onDispose(() -> {
                disposed = true;
                schedule();
            });
            sink.onRequest(n -> schedule());
        }

        private void schedule() {
            if (wip.getAndIncrement() == 0 && !finished) {
                try {
                    worker.schedule(this::drain);
                } catch (RejectedExecutionException e) {
                    // the scheduler was shut down: no read can run any more, and none is running
                    fail(new IllegalStateException("the read scheduler rejected the dump's reads: " + e.getMessage()
                            + "; keep the scheduler running until the stream terminates", e));
                }
            }
        }

        private void drain() {
            int missed = 1;
            while (true) {
                try {
                    if (disposed || terminated) {
                        cleanUp();
                        return;
                    }
                    readWhileDemanded();
                } catch (Throwable t) {
                    // a subscriber whose onNext threw (a Reactive Streams violation) or a broken reader:
                    // end the stream rather than leave the worker stuck with a lease
                    fail(t);
                    return;
                }
                missed = wip.addAndGet(-missed);
                if (missed == 0) {
                    return;
                }
            }
        }

        private void readWhileDemanded() {
            while (!terminated && !disposed) {
                if (waitingForCost != null) {
                    if (!costElapsed) {
                        return;
                    }
                    PageChunk due = waitingForCost;
                    waitingForCost = null;
                    costElapsed = false;
                    emit(due);
                    continue;
                }
                // completing needs neither demand nor a buffer: the consumer may be holding all of them
                if (reader != null && reader.exhausted()) {
                    terminated = true;
                    sink.complete();
                    return;
                }
                if (sink.requestedFromDownstream() <= 0) {
                    return;
                }
                PooledBuffer buffer = pool.tryAcquire();
                if (buffer == null) {
                    if (!waitingForBuffer) {
                        waitingForBuffer = true;
                        pool.recordWait();
                    }
                    return;
                }
                waitingForBuffer = false;
                PageChunk chunk = null;
                Duration cost;
                try {
                    if (reader == null) {
                        reader = readerFactory.get();
                    }
                    chunk = reader.next(buffer);
                    if (chunk == null) {
                        buffer.release();
                        terminated = true;
                        sink.complete();
                        return;
                    }
                    cost = reader.cost(chunk);
                } catch (Throwable t) {
                    if (chunk != null) {
                        chunk.release();
                    } else {
                        buffer.release();
                    }
                    terminated = true;
                    sink.error(t);
                    return;
                }
                if (cost.isZero() || cost.isNegative()) {
                    emit(chunk);
                } else {
                    // the chunk is "being read" until the cost has elapsed on the scheduler's clock
                    waitingForCost = chunk;
                    worker.schedule(() -> {
                        costElapsed = true;
                        schedule();
                    }, cost.toNanos(), TimeUnit.NANOSECONDS);
                }
            }
        }

        private void emit(PageChunk chunk) {
            if (disposed || sink.isCancelled()) {
                chunk.release();
            } else {
                sink.next(chunk);
            }
        }

        private void fail(Throwable t) {
            boolean report = !terminated && !disposed;
            terminated = true;
            cleanUp();
            if (report) {
                sink.error(t);
            }
        }

        private void cleanUp() {
            if (finished) {
                return;
            }
            finished = true;
            if (waitingForCost != null) {
                // read but not yet due: nobody else will ever see it
                waitingForCost.release();
                waitingForCost = null;
            }
            if (poolListener != null) {
                poolListener.dispose();
                poolListener = null;
            }
            if (reader != null) {
                try {
                    reader.close();
                } catch (Exception ignored) {
                    // closing frees descriptors; there is nobody left to report to
                }
                reader = null;
            }
            worker.dispose();
        }
    }
}
