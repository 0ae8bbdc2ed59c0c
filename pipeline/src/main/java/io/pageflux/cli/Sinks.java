package io.pageflux.cli;

import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.compress.Codec;
import io.pageflux.sink.compress.CompressedSinks;
import io.pageflux.sink.compress.CompressionOptions;
import io.pageflux.sink.criu.CriuImageOptions;
import io.pageflux.sink.pageserver.PageServerSink;
import io.pageflux.sink.pageserver.PageServerSinks;
import io.pageflux.sink.pageserver.PageServerTls;
import io.netty.handler.ssl.SslContext;
import java.nio.file.Path;
import io.pageflux.sink.stream.StreamSink;

/** The sink for a {@link Destination}. */
final class Sinks {

    private Sinks() {
    }

    /**
     * @param codec {@code null} for plain CRIU images; with a codec, a directory gets compressed
     *              page files and {@code -} compressed frames
     * @param directIo pages files of a directory with O_DIRECT ({@code --no-direct-io} turns it off)
     */
    static PageSink create(Destination destination, boolean force, boolean directIo, Codec codec, SslContext tls) {
        return switch (destination.kind()) {
            case DIR -> codec == null
                    ? PageSinks.criuImages(destination.dir(),
                            CriuImageOptions.defaults().withForce(force).withDirectIo(directIo))
                    : CompressedSinks.criuImages(destination.dir(), CompressionOptions.of(codec),
                            CriuImageOptions.defaults().withForce(force).withDirectIo(directIo));
            case NULL -> PageSinks.nullSink();
            case TCP -> {
                if (codec != null) {
                    throw CliException.badInput("--compress does not apply to " + destination.describe()
                            + ": the page-server protocol carries raw pages");
                }
                PageServerSink client = PageServerSinks.connect(destination.server());
                yield tls == null ? client : client.secure(tls);
            }
            case STDOUT -> StreamSink.toStdout(CompressionOptions.of(codec == null ? Codec.parse("none") : codec));
        };
    }

    /** The client TLS context for {@code --tls-*} options, or {@code null} for plain TCP. */
    static SslContext clientTls(Path caCert, Path cert, Path key, Destination destination) {
        if (caCert == null && cert == null && key == null) {
            return null;
        }
        if (destination.kind() != Destination.Kind.TCP) {
            throw CliException.badInput("--tls-* options apply to --to tcp://HOST:PORT only, not " + destination.describe());
        }
        if (caCert == null) {
            throw CliException.badInput("TLS needs --tls-cacert (the CA that signed the page server's certificate)");
        }
        if ((cert == null) != (key == null)) {
            throw CliException.badInput("a client certificate needs both --tls-cert and --tls-key");
        }
        try {
            return PageServerTls.clientFromPem(caCert, cert, key);
        } catch (RuntimeException e) {
            throw CliException.badInput("cannot load TLS material: " + e.getMessage(), e);
        }
    }
}
