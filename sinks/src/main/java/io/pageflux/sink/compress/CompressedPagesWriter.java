package io.pageflux.sink.compress;

import static io.pageflux.sink.compress.CompressedPagesFormat.*;

import io.pageflux.sink.criu.ImageDirectoryWriter;
import io.pageflux.sink.file.DirectFileOutput;
import io.pageflux.sink.file.StagingBuffers;
import io.pageflux.source.PageRun;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/**
 * Appends frames to one compressed pages file and finishes it with the index and footer
 * ({@link CompressedPagesFormat}). One thread at a time. The index is kept in memory until
 * {@link #finish()}: 24 bytes per frame, about 24 KiB per GiB of raw pages at the default frame
 * size. The file is written with {@code O_DIRECT} where the file system allows it, unless turned
 * off ({@link DirectFileOutput}: the page cache would cost more CPU than the compression saves).
 */
final class CompressedPagesWriter implements ImageDirectoryWriter.PagesFile, AutoCloseable {

    private final Path file;
    private final DirectFileOutput out;
    private final int maxFrameRaw;
    private ByteBuffer index = ByteBuffer.allocate(INDEX_ENTRY_BYTES * 64).order(ByteOrder.LITTLE_ENDIAN);
    private long position;
    private long rawBytes;
    private long frames;
    private boolean finished;

    /**
     * Creates {@code file} (it must not exist) and writes the file header.
     *
     * @param directIo write with {@code O_DIRECT} where the file system allows it
     */
    CompressedPagesWriter(Path file, Codec.Algorithm codec, int maxFrameRaw, boolean directIo) throws IOException {
        this(file, codec, maxFrameRaw, directIo, null);
    }

    /**
     * Like {@link #CompressedPagesWriter(Path, Codec.Algorithm, int, boolean)}, staging through the
     * buffers shared by all pages files of one directory ({@code null}: a buffer of its own).
     */
    CompressedPagesWriter(Path file, Codec.Algorithm codec, int maxFrameRaw, boolean directIo,
                          StagingBuffers staging) throws IOException {
        this.file = file;
        this.maxFrameRaw = maxFrameRaw;
        this.out = staging == null ? new DirectFileOutput(file, directIo) : new DirectFileOutput(file, directIo, staging);
        ByteBuffer h = ByteBuffer.allocate(FILE_HEADER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
        h.putInt(FH_MAGIC, FILE_MAGIC);
        h.putShort(FH_VERSION, (short) VERSION);
        h.put(FH_CODEC, (byte) codec.id());
        h.putInt(FH_PAGE_SIZE, PageRun.PAGE_SIZE);
        h.putInt(FH_MAX_FRAME_RAW, maxFrameRaw);
        h.putInt(FH_CRC, Checksums.crc32c(h, 0, FH_CRC));
        write(h);
    }

    /** Appends one frame: its header, then {@code payload} (position..limit, the stored bytes). */
    void writeFrame(FrameHeader header, ByteBuffer payload) throws IOException {
        if (header.rawLength() > maxFrameRaw) {
            throw new IllegalArgumentException("frame raw_length=" + header.rawLength() + " exceeds max=" + maxFrameRaw
                    + " of file=" + file);
        }
        if (index.remaining() < INDEX_ENTRY_BYTES) {
            ByteBuffer bigger = ByteBuffer.allocate(index.capacity() * 2).order(ByteOrder.LITTLE_ENDIAN);
            bigger.put(index.flip());
            index = bigger;
        }
        index.putLong(rawBytes).putLong(position).putInt(header.rawLength()).putInt(header.storedLength());
        write(header.toBuffer(), payload.duplicate());
        rawBytes += header.rawLength();
        frames++;
    }

    /** Writes index and footer and fsyncs the file; it is complete afterwards. */
    @Override
    public void finish() throws IOException {
        if (finished) {
            return;
        }
        ByteBuffer ix = index.duplicate().flip();
        long indexOffset = position;
        long indexHash = Checksums.xxhash64(ix);
        ByteBuffer f = ByteBuffer.allocate(FOOTER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
        f.putLong(FT_INDEX_OFFSET, indexOffset);
        f.putLong(FT_FRAME_COUNT, frames);
        f.putLong(FT_RAW_BYTES, rawBytes);
        f.putLong(FT_INDEX_XXHASH64, indexHash);
        f.putInt(FT_INDEX_ENTRY_SIZE, INDEX_ENTRY_BYTES);
        f.putInt(FT_CRC, Checksums.crc32c(f, 0, FT_CRC));
        f.putInt(FT_END_MAGIC, END_MAGIC);
        write(ix, f);
        out.finish();
        finished = true;
    }

    private void write(ByteBuffer... buffers) throws IOException {
        for (ByteBuffer b : buffers) {
            position += b.remaining();
            out.write(b);
        }
    }

    @Override
    public Path file() {
        return file;
    }

    /** Bytes in the file so far. */
    @Override
    public long bytesWritten() {
        return position;
    }

    long rawBytes() {
        return rawBytes;
    }

    long frames() {
        return frames;
    }

    /** Whether the file is being written with {@code O_DIRECT}. */
    boolean directIo() {
        return out.direct();
    }

    @Override
    public void close() throws IOException {
        out.close();
    }
}
