package io.pageflux.cli;

import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.compress.Codec;
import io.pageflux.sink.compress.CompressedSinks;
import io.pageflux.sink.compress.CompressionOptions;
import io.pageflux.sink.criu.CriuImageOptions;
import io.pageflux.sink.pageserver.PageServerSinks;
import io.pageflux.sink.stream.StreamSink;

/** The sink for a {@link Destination}. */
final class Sinks {

    private Sinks() {
    }

    /**
     * @param codec {@code null} for plain CRIU images; with a codec, a directory gets compressed
     *              page files and {@code -} compressed frames
     */
    static PageSink create(Destination destination, boolean force, Codec codec) {
        return switch (destination.kind()) {
            case DIR -> codec == null
                    ? PageSinks.criuImages(destination.dir(), CriuImageOptions.defaults().withForce(force))
                    : CompressedSinks.criuImages(destination.dir(), CompressionOptions.of(codec),
                            CriuImageOptions.defaults().withForce(force));
            case NULL -> PageSinks.nullSink();
            case TCP -> {
                if (codec != null) {
                    throw CliException.badInput("--compress does not apply to " + destination.describe()
                            + ": the page-server protocol carries raw pages");
                }
                yield PageServerSinks.connect(destination.server());
            }
            case STDOUT -> StreamSink.toStdout(CompressionOptions.of(codec == null ? Codec.parse("none") : codec));
        };
    }
}
