package io.pageflux.sink.stream;

import static io.pageflux.sink.stream.StreamFormat.*;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.SinkResult;
import io.pageflux.sink.compress.Checksums;
import io.pageflux.sink.compress.CompressedChunk;
import io.pageflux.sink.compress.CompressionOptions;
import io.pageflux.sink.compress.InFlight;
import io.pageflux.sink.compress.ParallelCompressor;
import io.pageflux.sink.criu.CriuLayout;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;
import java.util.Objects;
import java.util.zip.CRC32C;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * Writes a whole dump as one stream ({@link StreamFormat}) to a channel — stdout for
 * {@code pageflux dump --to -}. {@link StreamUnpacker} turns it into a plain image directory.
 *
 * <p><b>Backpressure, memory and ownership.</b> As {@link io.pageflux.sink.compress.CompressedImageSink}:
 * chunks are compressed in parallel by {@link ParallelCompressor} (output buffers from the
 * dump's pool) and written in order, blocking, on the write scheduler, one compressed chunk at a
 * time, so a slow pipe holds back the reader. Every chunk and compressed chunk is released after
 * use, on error and on cancel.
 *
 * <p><b>Outcome.</b> The trailer is written only when all chunks were written; on error or cancel
 * the stream simply ends without it, and a reader reports it as truncated. The channel is not
 * closed (it belongs to the caller).
 */
public final class StreamSink implements PageSink {

    private static final int STAGING_BYTES = 64 * 1024;

    private final WritableByteChannel out;
    private final CompressionOptions compression;
    private final Scheduler scheduler;
    private final String description;

    public StreamSink(WritableByteChannel out, CompressionOptions compression, Scheduler scheduler, String description) {
        this.out = Objects.requireNonNull(out, "out");
        this.compression = Objects.requireNonNull(compression, "compression");
        this.scheduler = Objects.requireNonNull(scheduler, "scheduler");
        this.description = Objects.requireNonNull(description, "description");
    }

    /** To {@code out}, writes on {@link Schedulers#boundedElastic()}. */
    public static StreamSink to(WritableByteChannel out, CompressionOptions compression) {
        return new StreamSink(out, compression, Schedulers.boundedElastic(), "stream:" + out);
    }

    /** To the process's standard output (file descriptor 1, unbuffered). */
    public static StreamSink toStdout(CompressionOptions compression) {
        return new StreamSink(new FileOutputStream(FileDescriptor.out).getChannel(), compression,
                Schedulers.boundedElastic(), "stream:-");
    }

    /**
     * Writes the header, then every chunk's entries and frames in order, then the trailer; see the
     * class description.
     *
     * @return counts once the trailer is written ({@code bytesWritten} = stream bytes,
     *         {@code entries} = 'E' records); errors with {@link StreamWriteException} if writing fails
     */
    @Override
    public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
        return Mono.using(
                        () -> new Writer(context),
                        w -> ParallelCompressor.compress(chunks, compression)
                                .doOnNext(w.inFlight::track)
                                .publishOn(scheduler, 1)
                                .doOnNext(w::write)
                                .then(Mono.fromCallable(w::finish)),
                        w -> w.inFlight.close())
                .doOnDiscard(CompressedChunk.class, CompressedChunk::release)
                .doOnDiscard(PageChunk.class, PageChunk::release)
                .subscribeOn(scheduler);
    }

    @Override
    public String describe() {
        return description + " (" + compression.codec() + ")";
    }

    @Override
    public String toString() {
        return "StreamSink[" + describe() + "]";
    }

    /** One stream being written; all methods on the write scheduler, one at a time. */
    private final class Writer {
        private final ByteBuffer staging = ByteBuffer.allocate(STAGING_BYTES).order(ByteOrder.LITTLE_ENDIAN);
        private final CRC32C crc = new CRC32C();
        private final InFlight inFlight = new InFlight();
        private long offset;
        private PagemapId current;
        private long pagemapRecords;
        private long entryRecords;
        private long pages;
        private long frames;
        private long rawBytes;

        Writer(DumpContext context) {
            ByteBuffer h = ByteBuffer.allocate(HEADER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
            h.putInt(H_MAGIC, MAGIC);
            h.putShort(H_VERSION, (short) VERSION);
            h.put(H_CODEC, (byte) compression.codec().algorithm().id());
            h.put(H_FLAGS, (byte) (context.preDump() ? FLAG_PRE_DUMP : 0));
            h.putInt(H_PID, context.pid());
            h.putInt(H_PAGE_SIZE, PageRun.PAGE_SIZE);
            h.putLong(H_DUMP_UPTIME, context.dumpUptimeMicros());
            h.putInt(H_MAX_FRAME_RAW, compression.frameBytes());
            h.putInt(H_CRC, Checksums.crc32c(h, 0, H_CRC));
            stage(h);
            if (context.parent().isPresent()) {
                byte[] path = context.parent().get().toAbsolutePath().normalize().toString()
                        .getBytes(StandardCharsets.UTF_8);
                if (path.length == 0 || path.length > MAX_PARENT_BYTES) {
                    throw new IllegalArgumentException("parent path is " + path.length + " bytes, the stream allows 1.."
                            + MAX_PARENT_BYTES + ": parent=" + context.parent().get());
                }
                recordHeader(TYPE_PARENT, path.length);
                stage(ByteBuffer.wrap(path));
            }
            // the pagemaps CriuImageSink opens up front, in the same order, so pages_ids match
            for (PagemapId id : CriuLayout.pagemapOrder(context)) {
                pagemap(id);
            }
            flush();
        }

        void write(CompressedChunk chunk) {
            if (!inFlight.take(chunk)) {
                return; // released at cancel while it waited for this thread
            }
            try {
                for (CompressedChunk.Segment s : chunk.segments()) {
                    if (!s.pagemap().equals(current)) {
                        pagemap(s.pagemap());
                    }
                    for (PageRun run : s.runs()) {
                        ensure(RECORD_HEADER_BYTES + ENTRY_BYTES);
                        recordHeader(TYPE_ENTRY, ENTRY_BYTES);
                        staging.putLong(run.pagemapVaddr()).putLong(run.pages()).putInt(run.flags()).putInt(0);
                        entryRecords++;
                        if (PageFlags.has(run.flags(), PageFlags.PE_PRESENT)) {
                            pages += run.pages();
                        }
                    }
                    for (CompressedChunk.Frame f : s.frames()) {
                        ensure(RECORD_HEADER_BYTES + io.pageflux.sink.compress.CompressedPagesFormat.FRAME_HEADER_BYTES);
                        recordHeader(TYPE_FRAME, io.pageflux.sink.compress.CompressedPagesFormat.FRAME_HEADER_BYTES
                                + f.header().storedLength());
                        f.header().writeTo(staging);
                        flush();
                        writeOut(chunk.payload(f));
                        frames++;
                        rawBytes += f.header().rawLength();
                    }
                }
                flush();
            } finally {
                chunk.release();
            }
        }

        SinkResult finish() {
            flush();
            int streamCrc = (int) crc.getValue();
            recordHeader(TYPE_TRAILER, TRAILER_BYTES);
            staging.putLong(pagemapRecords).putLong(entryRecords).putLong(pages).putLong(frames).putLong(rawBytes)
                    .putInt(streamCrc).putInt(END_MAGIC);
            flush();
            return new SinkResult(describe(), pages, offset, entryRecords);
        }

        private void pagemap(PagemapId id) {
            ensure(RECORD_HEADER_BYTES + PAGEMAP_BYTES);
            recordHeader(TYPE_PAGEMAP, PAGEMAP_BYTES);
            staging.put((byte) (id.kind() == PagemapId.Kind.TASK ? KIND_TASK : KIND_SHMEM))
                    .put(new byte[7]).putLong(id.id());
            current = id;
            pagemapRecords++;
        }

        private void recordHeader(byte type, int length) {
            staging.put(type).put((byte) 0).putShort((short) 0).putInt(length);
        }

        private void stage(ByteBuffer b) {
            ensure(b.remaining());
            staging.put(b);
        }

        private void ensure(int bytes) {
            if (staging.remaining() < bytes) {
                flush();
            }
        }

        private void flush() {
            staging.flip();
            writeOut(staging);
            staging.clear();
        }

        private void writeOut(ByteBuffer b) {
            crc.update(b.duplicate());
            try {
                while (b.hasRemaining()) {
                    offset += out.write(b);
                }
            } catch (IOException e) {
                throw new StreamWriteException(offset, "cannot write the stream: out=" + description + " offset="
                        + offset + " cause=\"" + e + "\": the reading side may have gone away (broken pipe) or the "
                        + "disk is full; the stream has no trailer, so a reader will report it as incomplete", e);
            }
        }
    }
}
