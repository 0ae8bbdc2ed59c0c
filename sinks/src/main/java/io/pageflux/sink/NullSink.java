package io.pageflux.sink;

import io.pageflux.source.PageChunk;
import java.util.concurrent.atomic.AtomicLong;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Consumes chunks and releases each one at once, counting pages, bytes and runs. Its result
 * reports the page bytes it discarded as {@code bytesWritten} (as if written to
 * {@code /dev/null}) and the runs it saw as {@code entries}.
 *
 * <p><b>Backpressure.</b> It requests without bound: it never holds a chunk, so the source's
 * buffer pool alone limits how much is read ahead. Chunks discarded on cancel are released.
 */
public final class NullSink implements PageSink {

    @Override
    public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
        return Mono.defer(() -> {
            AtomicLong pages = new AtomicLong();
            AtomicLong bytes = new AtomicLong();
            AtomicLong runs = new AtomicLong();
            return chunks
                    .doOnNext(chunk -> {
                        try {
                            pages.addAndGet(chunk.pages());
                            bytes.addAndGet(chunk.bytes());
                            runs.addAndGet(chunk.runs().size());
                        } finally {
                            chunk.release();
                        }
                    })
                    .then(Mono.fromCallable(() -> new SinkResult(describe(), pages.get(), bytes.get(), runs.get())))
                    .doOnDiscard(PageChunk.class, PageChunk::release);
        });
    }

    @Override
    public String describe() {
        return "null";
    }
}
