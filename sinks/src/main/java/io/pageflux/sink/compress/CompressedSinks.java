package io.pageflux.sink.compress;

import io.pageflux.sink.PageSink;
import io.pageflux.sink.criu.CriuImageOptions;
import io.pageflux.source.BufferPool;
import java.nio.file.Path;

/** Factories for the compressing sinks (what {@code PageSinks} exposes). */
public final class CompressedSinks {

    private CompressedSinks() {
    }

    /**
     * A compressed CRIU image directory at {@code dir} ({@link CompressedImageSink}), with
     * default directory options; output buffers from the pool in the Reactor context (see
     * {@link CompressionOptions}).
     */
    public static PageSink criuImages(Path dir, Codec codec) {
        return new CompressedImageSink(dir, CompressionOptions.of(codec), CriuImageOptions.defaults());
    }

    /** Like {@link #criuImages(Path, Codec)}, output buffers leased from {@code pool} (the chunks' pool). */
    public static PageSink criuImages(Path dir, Codec codec, BufferPool pool) {
        return new CompressedImageSink(dir, CompressionOptions.of(codec, pool), CriuImageOptions.defaults());
    }

    /** Everything configurable: compression (codec, pool, concurrency, frame size) and directory options. */
    public static PageSink criuImages(Path dir, CompressionOptions compression, CriuImageOptions options) {
        return new CompressedImageSink(dir, compression, options);
    }
}
