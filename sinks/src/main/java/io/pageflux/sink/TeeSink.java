package io.pageflux.sink;

import io.pageflux.source.PageChunk;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.stream.Collectors;
import org.reactivestreams.Subscription;
import reactor.core.publisher.BaseSubscriber;
import reactor.core.publisher.Flux;
import reactor.core.publisher.FluxSink;
import reactor.core.publisher.Mono;

/**
 * Fans one chunk stream out to several sinks without copying: each sink receives its own
 * {@link PageChunk#retain()}ed view of every chunk and releases it; the tee releases the original
 * once the views are handed out, so the buffer returns to the pool when the last sink is done.
 *
 * <p><b>Backpressure.</b> The tee requests one chunk from upstream at a time, and only when every
 * sink still running has outstanding demand: the slowest sink sets the pace, and at most the sum
 * of the sinks' own prefetches is buffered.
 *
 * <p><b>Failure.</b> If one sink fails, the others are cancelled (they abort their output) and
 * the tee fails with that error; upstream is cancelled once no sink is left. Views queued for a
 * cancelled sink are released through the discard hook, so nothing stays leased.
 *
 * <p>The result sums the sinks' {@code bytesWritten} and {@code entries}; {@code pages} is the
 * pages that passed through the tee.
 */
public final class TeeSink implements PageSink {

    private final List<PageSink> sinks;

    public TeeSink(List<? extends PageSink> sinks) {
        if (sinks.isEmpty()) {
            throw new IllegalArgumentException("tee needs at least one sink");
        }
        this.sinks = List.copyOf(sinks);
    }

    /**
     * Subscribes every sink to its branch; upstream is subscribed once all branches are.
     *
     * @return the combined result once every sink has completed, or the first sink's error
     */
    @Override
    public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
        return Mono.defer(() -> {
            Fanout fanout = new Fanout(chunks, sinks.size());
            List<Mono<SinkResult>> results = new ArrayList<>(sinks.size());
            for (int i = 0; i < sinks.size(); i++) {
                results.add(sinks.get(i).write(context, fanout.branch(i)));
            }
            return Mono.zip(results, parts -> combine(parts, fanout.pages()))
                    // a sink that completes without draining its branch must not stall the others
                    .doFinally(signal -> fanout.dispose());
        });
    }

    private SinkResult combine(Object[] parts, long pages) {
        long bytes = 0;
        long entries = 0;
        for (Object o : parts) {
            SinkResult r = (SinkResult) o;
            bytes += r.bytesWritten();
            entries += r.entries();
        }
        return new SinkResult(describe(), pages, bytes, entries);
    }

    public List<PageSink> sinks() {
        return sinks;
    }

    @Override
    public String describe() {
        return sinks.stream().map(PageSink::describe).collect(Collectors.joining(", ", "tee(", ")"));
    }

    /** The upstream subscriber and its branches; one per {@link #write}. */
    private static final class Fanout extends BaseSubscriber<PageChunk> {
        private final Flux<PageChunk> source;
        private final int n;
        private final AtomicReferenceArray<FluxSink<PageChunk>> branches;
        private final AtomicReferenceArray<Boolean> gone;
        /** Per branch: requested by its sink minus views handed to it. */
        private final AtomicLongArray demand;
        private final AtomicInteger attached = new AtomicInteger();
        private final AtomicInteger wip = new AtomicInteger();
        private final AtomicBoolean subscribed = new AtomicBoolean();
        private final AtomicLong pages = new AtomicLong();
        private volatile boolean ready;
        private volatile boolean inFlight;

        Fanout(Flux<PageChunk> source, int n) {
            this.source = source;
            this.n = n;
            this.branches = new AtomicReferenceArray<>(n);
            this.gone = new AtomicReferenceArray<>(n);
            this.demand = new AtomicLongArray(n);
            for (int i = 0; i < n; i++) {
                gone.set(i, Boolean.FALSE);
            }
        }

        Flux<PageChunk> branch(int i) {
            return Flux.<PageChunk>create(sink -> attach(i, sink), FluxSink.OverflowStrategy.BUFFER)
                    // count the sink's requests ourselves: the create sink's requestedFromDownstream()
                    // lags behind while another thread drains it, and the tee would overfill it
                    .doOnRequest(n -> addDemand(i, n))
                    // views queued in the branch when its sink cancels
                    .doOnDiscard(PageChunk.class, PageChunk::release);
        }

        private void addDemand(int i, long n) {
            long d;
            do {
                d = demand.get(i);
                if (d == Long.MAX_VALUE) {
                    break;
                }
            } while (!demand.compareAndSet(i, d, Long.MAX_VALUE - d <= n ? Long.MAX_VALUE : d + n));
            drainRequests();
        }

        long pages() {
            return pages.get();
        }

        private void attach(int i, FluxSink<PageChunk> sink) {
            if (!branches.compareAndSet(i, null, sink)) {
                sink.error(new IllegalStateException("tee branch " + i + " was subscribed twice: a sink must "
                        + "subscribe to its chunks once"));
                return;
            }
            sink.onCancel(() -> branchGone(i));
            if (attached.incrementAndGet() == n && subscribed.compareAndSet(false, true)) {
                source.subscribe(this);
            }
        }

        private void branchGone(int i) {
            gone.set(i, Boolean.TRUE);
            for (int k = 0; k < n; k++) {
                if (!gone.get(k)) {
                    drainRequests();
                    return;
                }
            }
            dispose();
        }

        @Override
        protected void hookOnSubscribe(Subscription subscription) {
            ready = true;
            drainRequests(); // BaseSubscriber would request unbounded by default
        }

        /** Requests one chunk when none is in flight and every live branch has demand. */
        private void drainRequests() {
            if (wip.getAndIncrement() != 0) {
                return;
            }
            int missed = 1;
            while (true) {
                if (ready && !inFlight && !isDisposed() && everyLiveBranchWants()) {
                    inFlight = true;
                    request(1);
                }
                missed = wip.addAndGet(-missed);
                if (missed == 0) {
                    return;
                }
            }
        }

        private boolean everyLiveBranchWants() {
            int live = 0;
            for (int i = 0; i < n; i++) {
                FluxSink<PageChunk> b = branches.get(i);
                if (b == null || gone.get(i)) {
                    continue;
                }
                live++;
                if (demand.get(i) <= 0) {
                    return false;
                }
            }
            return live > 0;
        }

        @Override
        protected void hookOnNext(PageChunk chunk) {
            try {
                pages.addAndGet(chunk.pages());
                for (int i = 0; i < n; i++) {
                    FluxSink<PageChunk> b = branches.get(i);
                    if (b != null && !gone.get(i)) {
                        if (demand.get(i) != Long.MAX_VALUE) {
                            demand.decrementAndGet(i);
                        }
                        // a branch cancelled meanwhile discards (releases) the view
                        b.next(chunk.retain());
                    }
                }
            } finally {
                chunk.release();
            }
            inFlight = false;
            drainRequests();
        }

        @Override
        protected void hookOnError(Throwable error) {
            for (int i = 0; i < n; i++) {
                FluxSink<PageChunk> b = branches.get(i);
                if (b != null) {
                    b.error(error);
                }
            }
        }

        @Override
        protected void hookOnComplete() {
            for (int i = 0; i < n; i++) {
                FluxSink<PageChunk> b = branches.get(i);
                if (b != null) {
                    b.complete();
                }
            }
        }
    }
}
