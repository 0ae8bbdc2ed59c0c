package io.pageflux.sink.compress;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.SinkResult;
import io.pageflux.sink.criu.CriuImageOptions;
import io.pageflux.sink.criu.CriuLayout;
import io.pageflux.sink.criu.ImageDirectoryWriter;
import io.pageflux.sink.criu.ImageWriteException;
import io.pageflux.sink.file.StagingBuffers;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Objects;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Writes a dump as a CRIU image directory whose pagemaps, inventory and parent link are exactly
 * those {@link io.pageflux.sink.criu.CriuImageSink} writes — the same {@link ImageDirectoryWriter}
 * and {@link CriuLayout} write them — but whose page data goes to
 * compressed pages files {@code pages-<id>.img.zst} / {@code .lz4} / {@code .gz}
 * ({@link CompressedPagesFormat}) instead of {@code pages-<id>.img}. {@link CompressedImages#unpack}
 * turns it back into the plain directory, byte for byte.
 *
 * <p><b>Backpressure, memory and ownership.</b> Chunks are compressed by
 * {@link ParallelCompressor} (up to {@link CompressionOptions#concurrency()} at once, output
 * buffers leased from the dump's pool — see {@link CompressionOptions} for the accounting) and
 * written in order, blocking, on {@link CriuImageOptions#scheduler()}, one compressed chunk at a
 * time: a slow disk holds back the compressors and through them the reader. Input chunks are
 * released after compression, compressed chunks after writing, and everything in flight on
 * error or cancel.
 *
 * <p><b>Outcome.</b> Like {@code CriuImageSink}: written into a temporary sibling directory,
 * fsynced and renamed into place on completion; deleted on error or cancel.
 */
public final class CompressedImageSink implements PageSink {

    private final Path dir;
    private final CompressionOptions compression;
    private final CriuImageOptions options;

    public CompressedImageSink(Path dir, CompressionOptions compression, CriuImageOptions options) {
        this.dir = Objects.requireNonNull(dir, "dir");
        this.compression = Objects.requireNonNull(compression, "compression");
        this.options = Objects.requireNonNull(options, "options");
        if (compression.codec().algorithm() == Codec.Algorithm.NONE) {
            throw new IllegalArgumentException("a compressed image directory needs a codec (zstd, lz4, gzip), not "
                    + "codec=none: write a plain directory with PageSinks.criuImages(dir) instead");
        }
    }

    /**
     * Writes {@code chunks} compressed into this sink's directory; see the class description.
     *
     * @return the counts after the commit ({@code bytesWritten} = all files, compressed);
     *         errors with {@link ImageWriteException} when the output is refused or a write fails
     */
    @Override
    public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
        return Mono.using(
                        () -> new Output(context),
                        out -> ParallelCompressor.compress(chunks, compression)
                                .doOnNext(out.inFlight::track)
                                .publishOn(options.scheduler(), 1)
                                .doOnNext(out::write)
                                .then(Mono.fromCallable(out::commit)),
                        Output::abort)
                .doOnDiscard(CompressedChunk.class, CompressedChunk::release)
                .doOnDiscard(PageChunk.class, PageChunk::release)
                .subscribeOn(options.scheduler());
    }

    public Path directory() {
        return dir;
    }

    public CompressionOptions compression() {
        return compression;
    }

    @Override
    public String describe() {
        return "dir:" + dir + " (" + compression.codec() + ")";
    }

    @Override
    public String toString() {
        return "CompressedImageSink[" + dir + " " + compression.codec() + "]";
    }

    /**
     * One directory being written: a CRIU {@link ImageDirectoryWriter} (temporary directory,
     * pagemaps, inventory, parent link, commit) whose pages files are our compressed ones
     * ({@link ImageDirectoryWriter.Options#withPagesFiles}).
     */
    private final class Output {
        private final ImageDirectoryWriter writer;
        private final InFlight inFlight = new InFlight();
        /** The compressed pages file of each pagemap, created by the directory writer through the factory. */
        private final Map<PagemapId, CompressedPagesWriter> pagesFiles = new HashMap<>();
        /**
         * The O_DIRECT staging memory of all compressed pages files (frames are never aligned, so
         * everything is staged): bounded whatever the number of pagemaps, freed on commit or abort.
         * Created before the directory writer, which opens the first pagemaps while it is created.
         */
        private final StagingBuffers staging = new StagingBuffers();

        Output(DumpContext context) {
            try {
                writer = CriuLayout.open(dir, context, CriuLayout.writerOptions(dir, context.dumpUptimeMicros(),
                                context.parent(), options.firstPagesId(), options.force())
                        .withDirectIo(options.directIo())
                        .withPagesFiles(this::createPagesFile));
            } catch (RuntimeException | Error e) {
                // no Output, so no abort(): the pagemaps opened before the failure may have borrowed buffers
                staging.release();
                throw e;
            }
        }

        private CompressedPagesWriter createPagesFile(Path directory, PagemapId id, long pagesId) throws IOException {
            Codec.Algorithm codec = compression.codec().algorithm();
            CompressedPagesWriter f = new CompressedPagesWriter(
                    directory.resolve(CompressedPagesFormat.pagesFileName(pagesId, codec)), codec, compression.frameBytes(),
                    options.directIo(), staging);
            pagesFiles.put(id, f);
            return f;
        }

        /** Writes one compressed chunk's entries and frames, then releases it. */
        synchronized void write(CompressedChunk chunk) {
            if (!inFlight.take(chunk)) {
                return; // released by abort while it waited for this thread
            }
            try {
                if (writer.isAborted()) {
                    return; // cancelled while the chunk was on its way
                }
                for (CompressedChunk.Segment s : chunk.segments()) {
                    ImageDirectoryWriter.PagemapWriter pagemap = writer.openPagemap(s.pagemap());
                    for (PageRun run : s.runs()) {
                        pagemap.add(run.pagemapVaddr(), run.pages(), run.flags(), null); // data: the frames below
                    }
                    CompressedPagesWriter data = pagesFiles.get(s.pagemap());
                    for (CompressedChunk.Frame f : s.frames()) {
                        try {
                            data.writeFrame(f.header(), chunk.payload(f));
                        } catch (IOException e) {
                            inFlight.close();
                            throw writer.writeFailed(data.file(), data.bytesWritten(), e);
                        }
                    }
                }
            } catch (IllegalArgumentException e) {
                abort(); // runs out of order or invalid: nothing complete-looking may stay
                throw e;
            } finally {
                chunk.release();
            }
        }

        synchronized SinkResult commit() {
            try {
                writer.commit(); // finishes every pages file first, or aborts
            } finally {
                staging.release();
            }
            return new SinkResult(describe(), writer.pages(), writer.bytesWritten(), writer.entries());
        }

        synchronized void abort() {
            inFlight.close();
            try {
                writer.abort(); // closes every pages file first
            } finally {
                staging.release();
            }
        }
    }
}
