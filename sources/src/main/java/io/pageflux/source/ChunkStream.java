package io.pageflux.source;

import java.time.Duration;
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

    /** One subscription's state; every field below {@code wip} is touched only on the worker. */
    private static final class Drain {
        private final FluxSink<PageChunk> sink;
        private final Supplier<? extends ChunkReader> readerFactory;
        private final BufferPool pool;
        private final Scheduler.Worker worker;
        private final AtomicInteger wip = new AtomicInteger();
        private volatile boolean disposed;

        private ChunkReader reader;
        private Disposable poolListener;
        private boolean terminated;
        private PageChunk waitingForCost;
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
            if (wip.getAndIncrement() == 0) {
                worker.schedule(this::drain);
            }
        }

        private void drain() {
            int missed = 1;
            while (true) {
                if (disposed || terminated) {
                    cleanUp();
                    return;
                }
                readWhileDemanded();
                missed = wip.addAndGet(-missed);
                if (missed == 0) {
                    return;
                }
            }
        }

        private void readWhileDemanded() {
            while (!terminated && !disposed && waitingForCost == null && sink.requestedFromDownstream() > 0) {
                PooledBuffer buffer = pool.tryAcquire();
                if (buffer == null) {
                    if (!waitingForBuffer) {
                        waitingForBuffer = true;
                        pool.recordWait();
                    }
                    return;
                }
                waitingForBuffer = false;
                PageChunk chunk;
                try {
                    if (reader == null) {
                        reader = readerFactory.get();
                    }
                    chunk = reader.next(buffer);
                } catch (Throwable t) {
                    buffer.release();
                    terminated = true;
                    sink.error(t);
                    return;
                }
                if (chunk == null) {
                    buffer.release();
                    terminated = true;
                    sink.complete();
                    return;
                }
                Duration cost = reader.cost(chunk);
                if (cost.isZero() || cost.isNegative()) {
                    emit(chunk);
                } else {
                    waitingForCost = chunk;
                    worker.schedule(() -> {
                        if (waitingForCost == chunk) {
                            waitingForCost = null;
                            emit(chunk);
                            schedule();
                        }
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

        private void cleanUp() {
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
