package io.pageflux.pipeline;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.SinkResult;
import io.pageflux.source.PageChunk;
import java.util.List;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/** Fan-out of one chunk stream to several sinks. */
final class Tee {

    private Tee() {
    }

    static Mono<List<SinkResult>> write(List<PageSink> sinks, DumpContext context, Flux<PageChunk> chunks) {
        // TODO(pipeline): delegate to PageSinks.tee once the sinks module has it
        return Mono.error(new UnsupportedOperationException("several sinks: not yet"));
    }
}
