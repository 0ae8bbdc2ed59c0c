package io.pageflux.pipeline.incremental;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.SinkResult;
import io.pageflux.source.PageChunk;
import java.nio.file.Path;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicLong;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Hands a sink the dump's context with the parent directory filled in (so the image sink writes the
 * relative {@code parent} link), and remembers the context's {@code dump_uptime}: the digests file must
 * carry the same value as the inventory the sink writes. Backpressure and chunk ownership are the
 * delegate's: the chunks pass through untouched.
 */
final class ParentContextSink implements PageSink {

    private final PageSink delegate;
    private final Path parent;
    private final AtomicLong uptime;

    ParentContextSink(PageSink delegate, Path parent, AtomicLong uptime) {
        this.delegate = Objects.requireNonNull(delegate, "delegate");
        this.parent = parent;
        this.uptime = uptime;
    }

    @Override
    public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
        uptime.set(context.dumpUptimeMicros());
        DumpContext withParent = new DumpContext(context.pid(), context.regions(), context.dumpUptimeMicros(),
                context.preDump(), Optional.ofNullable(parent));
        return delegate.write(withParent, chunks);
    }

    @Override
    public String describe() {
        return delegate.describe();
    }
}
