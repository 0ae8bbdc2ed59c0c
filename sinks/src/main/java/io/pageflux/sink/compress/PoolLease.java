package io.pageflux.sink.compress;

import io.pageflux.source.BufferPool;
import io.pageflux.source.PooledBuffer;
import java.util.concurrent.atomic.AtomicBoolean;
import reactor.core.Disposable;
import reactor.core.publisher.Mono;
import reactor.core.publisher.MonoSink;

/**
 * Leases a buffer from a {@link BufferPool} without blocking a thread: when the pool is empty,
 * waits for a buffer to come back ({@link BufferPool#onRelease}) and takes it then.
 */
final class PoolLease {

    private PoolLease() {
    }

    /**
     * A buffer with one reference, owned by the subscriber. If the subscriber cancels while a
     * buffer is being handed over, the buffer is released through the discard hook
     * ({@code doOnDiscard(PooledBuffer.class, PooledBuffer::release)} downstream) or directly.
     */
    static Mono<PooledBuffer> acquire(BufferPool pool) {
        return Mono.create(sink -> new Waiter(pool, sink).start());
    }

    private static final class Waiter {
        private final BufferPool pool;
        private final MonoSink<PooledBuffer> sink;
        private final AtomicBoolean done = new AtomicBoolean();
        private volatile Disposable listener;

        Waiter(BufferPool pool, MonoSink<PooledBuffer> sink) {
            this.pool = pool;
            this.sink = sink;
        }

        void start() {
            sink.onDispose(this::stop);
            if (attempt()) {
                return;
            }
            // register before retrying, so a buffer returned in between is not missed
            listener = pool.onRelease(this::attempt);
            if (done.get()) {
                listener.dispose();
            } else {
                attempt();
            }
        }

        private boolean attempt() {
            if (done.get()) {
                return true;
            }
            PooledBuffer buffer = pool.tryAcquire();
            if (buffer == null) {
                return false;
            }
            if (done.compareAndSet(false, true)) {
                disposeListener();
                sink.success(buffer);
            } else {
                buffer.release(); // another attempt won, or the subscriber went away
            }
            return true;
        }

        private void stop() {
            done.set(true);
            disposeListener();
        }

        private void disposeListener() {
            Disposable l = listener;
            if (l != null) {
                l.dispose();
            }
        }
    }
}
