package io.pageflux.sink;

import io.pageflux.source.PageChunk;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Where a dump's pages go. A sink subscribes to {@code chunks} once, requests only as many chunks
 * as it can hold in flight (backpressure reaches the reader through its requests), and
 * <b>releases every chunk it receives</b> — after writing it, and also on error and cancel.
 *
 * <p>The returned {@code Mono} completes with a {@link SinkResult} once everything is durably
 * written and the output committed (e.g. a directory renamed into place). It errors if anything
 * failed; then nothing it wrote looks complete. Cancelling it cancels {@code chunks} and aborts
 * the output the same way.
 */
public interface PageSink {

    Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks);

    /** A short description for reports, e.g. {@code dir:/tmp/d1}. */
    String describe();
}
