package io.pageflux.pipeline;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.SinkResult;
import io.pageflux.source.PageChunk;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReferenceArray;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Several sinks through {@link PageSinks#tee}, keeping each sink's own {@link SinkResult} for the
 * report (the tee itself only reports the sum).
 */
final class Tee {

    private Tee() {
    }

    static Mono<List<SinkResult>> write(List<PageSink> sinks, DumpContext context, Flux<PageChunk> chunks) {
        return Mono.defer(() -> {
            AtomicReferenceArray<SinkResult> results = new AtomicReferenceArray<>(sinks.size());
            List<PageSink> recording = new ArrayList<>(sinks.size());
            for (int i = 0; i < sinks.size(); i++) {
                int index = i;
                PageSink sink = sinks.get(i);
                recording.add(new PageSink() {
                    @Override
                    public Mono<SinkResult> write(DumpContext ctx, Flux<PageChunk> branch) {
                        return sink.write(ctx, branch).doOnNext(r -> results.set(index, r));
                    }

                    @Override
                    public String describe() {
                        return sink.describe();
                    }
                });
            }
            return PageSinks.tee(recording).write(context, chunks).map(total -> {
                List<SinkResult> each = new ArrayList<>(sinks.size());
                for (int i = 0; i < sinks.size(); i++) {
                    each.add(results.get(i));
                }
                return each;
            });
        });
    }
}
