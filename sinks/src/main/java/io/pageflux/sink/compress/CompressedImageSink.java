package io.pageflux.sink.compress;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.SinkResult;
import io.pageflux.sink.criu.CriuImageOptions;
import io.pageflux.sink.criu.ImageDirectoryWriter;
import io.pageflux.sink.criu.ImageWriteException;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Writes a dump as a CRIU image directory whose pagemaps, inventory and parent link are exactly
 * those {@link io.pageflux.sink.criu.CriuImageSink} writes, but whose page data goes to
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

    /** One directory being written: the directory writer (temp dir, inventory, commit) and our files. */
    private final class Output {
        private final ImageDirectoryWriter writer;
        private final InFlight inFlight = new InFlight();
        private final Map<PagemapId, Pagemap> pagemaps = new LinkedHashMap<>();
        private long nextPagesId;

        Output(DumpContext context) {
            writer = ImageDirectoryWriter.create(dir, CriuLayout.writerOptions(dir, context.dumpUptimeMicros(),
                    context.parent(), options.firstPagesId(), options.force()));
            nextPagesId = options.firstPagesId();
            try {
                for (PagemapId id : CriuLayout.pagemapOrder(context)) {
                    pagemap(id);
                }
            } catch (RuntimeException e) {
                abort();
                throw e;
            }
        }

        private Pagemap pagemap(PagemapId id) {
            Pagemap pm = pagemaps.get(id);
            if (pm == null) {
                pm = new Pagemap(id, nextPagesId++);
                pagemaps.put(id, pm);
            }
            return pm;
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
                    Pagemap pm = pagemap(s.pagemap());
                    pm.add(s);
                    for (CompressedChunk.Frame f : s.frames()) {
                        pm.frame(f.header(), chunk.payload(f));
                    }
                }
            } finally {
                chunk.release();
            }
        }

        synchronized SinkResult commit() {
            long pages = 0;
            long entries = 0;
            long bytes = 0;
            for (Pagemap pm : pagemaps.values()) {
                pm.finish();
                pages += pm.map.pages();
                entries += pm.map.entries();
                bytes += pm.map.bytesWritten() + pm.data.bytesWritten();
            }
            writer.commit();
            return new SinkResult(describe(), pages, bytes + writer.bytesWritten(), entries);
        }

        synchronized void abort() {
            inFlight.close();
            for (Pagemap pm : pagemaps.values()) {
                pm.closeQuietly();
            }
            writer.abort();
        }

        /** A pagemap file and its compressed pages file, in the writer's temporary directory. */
        private final class Pagemap {
            final PagemapFileWriter map;
            final CompressedPagesWriter data;

            Pagemap(PagemapId id, long pagesId) {
                Path temp = writer.temporaryDirectory();
                Path mapFile = temp.resolve(id.pagemapFileName());
                Path dataFile = temp.resolve(CompressedPagesFormat.pagesFileName(pagesId,
                        compression.codec().algorithm()));
                try {
                    map = new PagemapFileWriter(mapFile, id, pagesId);
                } catch (IOException e) {
                    throw fail(mapFile, 0, e);
                }
                try {
                    data = new CompressedPagesWriter(dataFile, compression.codec().algorithm(),
                            compression.frameBytes());
                } catch (IOException e) {
                    try {
                        map.close();
                    } catch (IOException ignored) {
                        // deleted next
                    }
                    throw fail(dataFile, 0, e);
                }
            }

            void add(CompressedChunk.Segment s) {
                try {
                    for (PageRun run : s.runs()) {
                        map.add(run.pagemapVaddr(), run.pages(), run.flags());
                    }
                } catch (IOException e) {
                    throw fail(map.file(), map.bytesWritten(), e);
                } catch (IllegalArgumentException e) {
                    abort();
                    throw e;
                }
            }

            void frame(FrameHeader h, java.nio.ByteBuffer payload) {
                try {
                    data.writeFrame(h, payload);
                } catch (IOException e) {
                    throw fail(data.file(), data.bytesWritten(), e);
                }
            }

            void finish() {
                try {
                    map.finish();
                } catch (IOException e) {
                    throw fail(map.file(), map.bytesWritten(), e);
                }
                try {
                    data.finish();
                } catch (IOException e) {
                    throw fail(data.file(), data.bytesWritten(), e);
                }
            }

            void closeQuietly() {
                try {
                    if (map != null) {
                        map.close();
                    }
                } catch (IOException ignored) {
                    // deleted next
                }
                try {
                    if (data != null) {
                        data.close();
                    }
                } catch (IOException ignored) {
                    // deleted next
                }
            }
        }

        /** Aborts the directory and describes the failed write. */
        private ImageWriteException fail(Path file, long fileBytes, IOException e) {
            String cleanup = "";
            try {
                abort();
            } catch (ImageWriteException ex) {
                e.addSuppressed(ex);
                cleanup = " (and deleting it failed: delete it by hand)";
            }
            String m = String.valueOf(e.getMessage());
            String remedy = m.contains("No space left") || m.contains("Disk quota exceeded")
                    ? "free space on that file system or write the dump elsewhere" : "check the output location";
            return new ImageWriteException(file, "cannot write compressed image: file=" + file + " bytesWritten="
                    + fileBytes + " cause=\"" + e + "\": " + remedy + "; the partial directory "
                    + writer.temporaryDirectory() + " was deleted" + cleanup + " and dir=" + dir + " was not created", e);
        }
    }
}
