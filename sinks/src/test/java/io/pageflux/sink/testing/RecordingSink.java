package io.pageflux.sink.testing;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.SinkResult;
import io.pageflux.source.PageChunk;
import io.pageflux.source.testing.SimulatedProcess;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;

/**
 * A test sink: records when each chunk arrived (on the given clock) and how big it was, optionally
 * checks its bytes against a simulated process, and releases it at once.
 */
final class RecordingSink implements PageSink {

    record Arrival(long sequence, int bytes, long atNanos) {
    }

    private final String name;
    private final Scheduler clock;
    private final SimulatedProcess verifyAgainst;
    final List<Arrival> arrivals = new CopyOnWriteArrayList<>();
    final AtomicLong badChunks = new AtomicLong();

    RecordingSink(String name, Scheduler clock, SimulatedProcess verifyAgainst) {
        this.name = name;
        this.clock = clock;
        this.verifyAgainst = verifyAgainst;
    }

    @Override
    public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
        return Mono.defer(() -> {
            AtomicLong pages = new AtomicLong();
            AtomicLong bytes = new AtomicLong();
            AtomicLong runs = new AtomicLong();
            return chunks.doOnNext(c -> {
                        try {
                            arrivals.add(new Arrival(c.sequence(), c.bytes(), clock.now(TimeUnit.NANOSECONDS)));
                            if (verifyAgainst != null && !verifyAgainst.contentMatches(c)) {
                                badChunks.incrementAndGet();
                            }
                            pages.addAndGet(c.pages());
                            bytes.addAndGet(c.bytes());
                            runs.addAndGet(c.runs().size());
                        } finally {
                            c.release();
                        }
                    })
                    .doOnDiscard(PageChunk.class, PageChunk::release)
                    .then(Mono.fromCallable(() -> new SinkResult(describe(), pages.get(), bytes.get(), runs.get())));
        });
    }

    long lastArrivalNanos() {
        return arrivals.isEmpty() ? -1 : arrivals.get(arrivals.size() - 1).atNanos();
    }

    @Override
    public String describe() {
        return "recording:" + name;
    }
}
