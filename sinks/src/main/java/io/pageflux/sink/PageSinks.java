package io.pageflux.sink;

import io.pageflux.sink.criu.CriuImageOptions;
import io.pageflux.sink.criu.CriuImageSink;
import java.nio.file.Path;
import java.util.List;

/** The sinks pageflux ships. */
public final class PageSinks {

    private PageSinks() {
    }

    /**
     * A CRIU image directory at {@code dir} (created; must not exist or be empty), written with
     * {@link CriuImageOptions#defaults()}. See {@link CriuImageSink}.
     */
    public static PageSink criuImages(Path dir) {
        return new CriuImageSink(dir, CriuImageOptions.defaults());
    }

    /** A CRIU image directory at {@code dir}, e.g. {@code CriuImageOptions.defaults().withForce(true)}. */
    public static PageSink criuImages(Path dir, CriuImageOptions options) {
        return new CriuImageSink(dir, options);
    }

    /** Counts and releases every chunk; writes nothing. For benchmarks and dry runs. See {@link NullSink}. */
    public static PageSink nullSink() {
        return new NullSink();
    }

    /**
     * Every chunk to every sink, sharing the buffer (each sink gets its own retained view). The
     * slowest sink sets the pace; if one fails, all are cancelled and the tee fails. See {@link TeeSink}.
     */
    public static PageSink tee(PageSink... sinks) {
        return new TeeSink(List.of(sinks));
    }

    /** Like {@link #tee(PageSink...)}. */
    public static PageSink tee(List<? extends PageSink> sinks) {
        return new TeeSink(sinks);
    }
}
