package io.pageflux.cli;

import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.criu.CriuImageOptions;

/** The sink for a {@link Destination}. */
final class Sinks {

    private Sinks() {
    }

    static PageSink create(Destination destination, boolean force) {
        return switch (destination.kind()) {
            case DIR -> PageSinks.criuImages(destination.dir(), CriuImageOptions.defaults().withForce(force));
            case NULL -> PageSinks.nullSink();
        };
    }
}
