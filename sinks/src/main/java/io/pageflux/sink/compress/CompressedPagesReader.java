package io.pageflux.sink.compress;

import static io.pageflux.sink.compress.CompressedPagesFormat.*;

import io.pageflux.sink.criu.ImageFormatException;
import io.pageflux.source.PageRun;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Reads a compressed pages file ({@link CompressedPagesFormat}) as if it were the plain
 * {@code pages-<id>.img}: {@link #read} any range of raw bytes (decompressing only the frames it
 * touches) or {@link #transferTo} all of them. Every check the format describes is made; a fault
 * is an {@link ImageFormatException} naming the file, the byte offset, the frame and the field.
 *
 * <p>Not thread-safe (one reader per thread). Memory: the index (24 bytes per frame) and two
 * buffers of the file's largest frame.
 */
public final class CompressedPagesReader implements AutoCloseable {

    private static final String DAMAGED = "the compressed dump is damaged or was not completely written: re-create it";

    /** One frame as the index lists it. */
    public record FrameEntry(int index, long rawOffset, long fileOffset, int rawLength, int storedLength) {
        public long rawEnd() {
            return rawOffset + rawLength;
        }
    }

    private final Path file;
    private final FileChannel channel;
    private final Codec.Algorithm codec;
    private final int maxFrameRaw;
    private final long rawBytes;
    private final FrameEntry[] frames;
    private final Frames decoder = new Frames(Codec.none());
    private ByteBuffer stored;
    private ByteBuffer raw;
    private int cachedFrame = -1;
    private long framesDecoded;

    private CompressedPagesReader(Path file, FileChannel channel, Codec.Algorithm codec, int maxFrameRaw,
                                  long rawBytes, FrameEntry[] frames) {
        this.file = file;
        this.channel = channel;
        this.codec = codec;
        this.maxFrameRaw = maxFrameRaw;
        this.rawBytes = rawBytes;
        this.frames = frames;
    }

    /**
     * Opens {@code file} and checks its header, footer and index (not yet the frames).
     *
     * @throws ImageFormatException if the file is truncated (no footer) or any of those is damaged
     */
    public static CompressedPagesReader open(Path file) throws IOException {
        FileChannel ch = FileChannel.open(file, StandardOpenOption.READ);
        try {
            return open(file, ch);
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    private static CompressedPagesReader open(Path file, FileChannel ch) throws IOException {
        long size = ch.size();
        if (size < FILE_HEADER_BYTES + FOOTER_BYTES) {
            throw new ImageFormatException(file, size, "footer", "truncated: the file has " + size
                    + " bytes, a complete one has at least " + (FILE_HEADER_BYTES + FOOTER_BYTES), DAMAGED);
        }
        ByteBuffer h = readFully(file, ch, 0, FILE_HEADER_BYTES);
        int magic = h.getInt(FH_MAGIC);
        if (magic != FILE_MAGIC) {
            throw new ImageFormatException(file, FH_MAGIC, "file_header.magic", "not a pageflux compressed pages "
                    + "file: found " + Checksums.hex(magic) + " expected " + Checksums.hex(FILE_MAGIC) + " ('PFXC')",
                    "pass a pages-<id>.img.zst/.lz4/.gz file written by pageflux");
        }
        int crc = Checksums.crc32c(h, 0, FH_CRC);
        if (crc != h.getInt(FH_CRC)) {
            throw new ImageFormatException(file, FH_CRC, "file_header.crc", "checksum mismatch (stored "
                    + Checksums.hex(h.getInt(FH_CRC)) + ", computed " + Checksums.hex(crc) + ")", DAMAGED);
        }
        int version = h.getShort(FH_VERSION) & 0xffff;
        if (version != VERSION) {
            throw new ImageFormatException(file, FH_VERSION, "file_header.version", "version=" + version
                    + " is not supported (this pageflux reads version " + VERSION + ")", "use a matching pageflux");
        }
        Codec.Algorithm codec;
        try {
            codec = Codec.Algorithm.ofId(h.get(FH_CODEC) & 0xff);
        } catch (IllegalArgumentException e) {
            throw new ImageFormatException(file, FH_CODEC, "file_header.codec", e.getMessage(), DAMAGED);
        }
        int pageSize = h.getInt(FH_PAGE_SIZE);
        if (pageSize != PageRun.PAGE_SIZE) {
            throw new ImageFormatException(file, FH_PAGE_SIZE, "file_header.page_size", "page_size=" + pageSize
                    + " but this machine's is " + PageRun.PAGE_SIZE, "unpack it on a machine with that page size");
        }
        int maxFrameRaw = h.getInt(FH_MAX_FRAME_RAW);
        if (maxFrameRaw <= 0 || maxFrameRaw % PageRun.PAGE_SIZE != 0
                || maxFrameRaw > CompressionOptions.MAX_FRAME_PAGES * PageRun.PAGE_SIZE) {
            throw new ImageFormatException(file, FH_MAX_FRAME_RAW, "file_header.max_frame_raw", "max_frame_raw="
                    + Integer.toUnsignedString(maxFrameRaw) + " is not a whole number of pages up to "
                    + CompressionOptions.MAX_FRAME_PAGES + " pages", DAMAGED);
        }

        long footerAt = size - FOOTER_BYTES;
        ByteBuffer f = readFully(file, ch, footerAt, FOOTER_BYTES);
        int end = f.getInt(FT_END_MAGIC);
        if (end != END_MAGIC) {
            throw new ImageFormatException(file, footerAt + FT_END_MAGIC, "footer.magic", "truncated or incomplete: "
                    + "no footer at the end of the file (found " + Checksums.hex(end) + " where the end magic "
                    + Checksums.hex(END_MAGIC) + " 'PFXE' belongs; file size " + size + ")", DAMAGED);
        }
        crc = Checksums.crc32c(f, 0, FT_CRC);
        if (crc != f.getInt(FT_CRC)) {
            throw new ImageFormatException(file, footerAt + FT_CRC, "footer.crc", "checksum mismatch (stored "
                    + Checksums.hex(f.getInt(FT_CRC)) + ", computed " + Checksums.hex(crc) + ")", DAMAGED);
        }
        long indexOffset = f.getLong(FT_INDEX_OFFSET);
        long count = f.getLong(FT_FRAME_COUNT);
        long rawBytes = f.getLong(FT_RAW_BYTES);
        int entrySize = f.getInt(FT_INDEX_ENTRY_SIZE);
        if (entrySize != INDEX_ENTRY_BYTES || count < 0 || count > Integer.MAX_VALUE / INDEX_ENTRY_BYTES
                || indexOffset != footerAt - count * INDEX_ENTRY_BYTES || indexOffset < FILE_HEADER_BYTES) {
            throw new ImageFormatException(file, footerAt, "footer", "inconsistent: index_offset=" + indexOffset
                    + " frames=" + count + " entry_size=" + entrySize + " do not fit file size " + size, DAMAGED);
        }
        ByteBuffer ix = readFully(file, ch, indexOffset, (int) count * INDEX_ENTRY_BYTES);
        long hash = Checksums.xxhash64(ix);
        if (hash != f.getLong(FT_INDEX_XXHASH64)) {
            throw new ImageFormatException(file, indexOffset, "index", "checksum mismatch (stored "
                    + Checksums.hex(f.getLong(FT_INDEX_XXHASH64)) + ", computed " + Checksums.hex(hash) + ")", DAMAGED);
        }
        FrameEntry[] frames = new FrameEntry[(int) count];
        long expectRaw = 0;
        long expectFile = FILE_HEADER_BYTES;
        for (int i = 0; i < count; i++) {
            int at = i * INDEX_ENTRY_BYTES;
            FrameEntry e = new FrameEntry(i, ix.getLong(at + IX_RAW_OFFSET), ix.getLong(at + IX_FILE_OFFSET),
                    ix.getInt(at + IX_RAW_LENGTH), ix.getInt(at + IX_STORED_LENGTH));
            if (e.rawOffset() != expectRaw || e.fileOffset() != expectFile || e.rawLength() <= 0
                    || e.rawLength() > maxFrameRaw || e.rawLength() % PageRun.PAGE_SIZE != 0
                    || e.storedLength() <= 0 || e.storedLength() > e.rawLength()) {
                throw new ImageFormatException(file, indexOffset + at, "index[" + i + "]", "inconsistent entry "
                        + e + " (expected raw_offset=" + expectRaw + " file_offset=" + expectFile + ")", DAMAGED);
            }
            frames[i] = e;
            expectRaw += e.rawLength();
            expectFile += FRAME_HEADER_BYTES + (long) e.storedLength();
        }
        if (expectRaw != rawBytes || expectFile != indexOffset) {
            throw new ImageFormatException(file, footerAt, "footer", "frames add up to raw=" + expectRaw + " ending at "
                    + expectFile + " but the footer says raw=" + rawBytes + " index_offset=" + indexOffset, DAMAGED);
        }
        return new CompressedPagesReader(file, ch, codec, maxFrameRaw, rawBytes, frames);
    }

    public Path file() {
        return file;
    }

    /** The codec the file was written with (single frames may be stored uncompressed). */
    public Codec.Algorithm codec() {
        return codec;
    }

    /** Size of the plain pages file this one stands for. */
    public long rawBytes() {
        return rawBytes;
    }

    public int frameCount() {
        return frames.length;
    }

    public FrameEntry frame(int i) {
        return frames[i];
    }

    /** How many frames were decompressed so far (a frame read twice in a row counts once). */
    public long framesDecoded() {
        return framesDecoded;
    }

    /**
     * Fills {@code dst} (position to limit) with the raw bytes starting at {@code rawOffset},
     * decompressing and verifying only the frames that overlap them. Advances {@code dst}'s position.
     *
     * @throws IllegalArgumentException if the range is outside {@link #rawBytes()}
     * @throws ImageFormatException     if a frame is damaged
     */
    public void read(long rawOffset, ByteBuffer dst) throws IOException {
        long len = dst.remaining();
        if (rawOffset < 0 || rawOffset + len > rawBytes) {
            throw new IllegalArgumentException("range offset=" + rawOffset + " length=" + len + " is outside file="
                    + file + " rawBytes=" + rawBytes);
        }
        long at = rawOffset;
        int i = findFrame(at);
        while (dst.hasRemaining()) {
            FrameEntry e = frames[i];
            ByteBuffer frameRaw = decode(i);
            int from = (int) (at - e.rawOffset());
            int n = Math.min(dst.remaining(), e.rawLength() - from);
            dst.put(frameRaw.duplicate().position(from).limit(from + n));
            at += n;
            i++;
        }
    }

    /**
     * Writes all raw bytes to {@code out}, in order, each frame verified.
     *
     * @return the number of bytes written ({@link #rawBytes()})
     */
    public long transferTo(WritableByteChannel out) throws IOException {
        long total = 0;
        for (int i = 0; i < frames.length; i++) {
            ByteBuffer b = decode(i).duplicate();
            while (b.hasRemaining()) {
                total += out.write(b);
            }
        }
        return total;
    }

    /** Decompresses frame {@code i} into the raw buffer (position 0, limit = raw length). */
    private ByteBuffer decode(int i) throws IOException {
        FrameEntry e = frames[i];
        if (cachedFrame == i) {
            return raw.duplicate().position(0).limit(e.rawLength());
        }
        cachedFrame = -1;
        if (stored == null) {
            stored = ByteBuffer.allocateDirect(FRAME_HEADER_BYTES + maxFrameRaw).order(ByteOrder.LITTLE_ENDIAN);
            raw = ByteBuffer.allocateDirect(maxFrameRaw);
        }
        int length = FRAME_HEADER_BYTES + e.storedLength();
        stored.clear().limit(length);
        long pos = e.fileOffset();
        while (stored.hasRemaining()) {
            int n = channel.read(stored, pos);
            if (n < 0) {
                throw new ImageFormatException(file, pos, "frame[" + i + "]", "truncated: frame=" + i
                        + " needs bytes up to offset " + (e.fileOffset() + length) + " but the file ends at " + pos,
                        DAMAGED);
            }
            pos += n;
        }
        stored.flip();
        FrameHeader h;
        try {
            h = FrameHeader.read(stored, maxFrameRaw);
        } catch (Frames.FrameCheckException ex) {
            throw frameFault(e, ex.field(), ex.problem());
        }
        if (h.rawLength() != e.rawLength() || h.storedLength() != e.storedLength()) {
            throw frameFault(e, "header", "lengths raw=" + h.rawLength() + " stored=" + h.storedLength()
                    + " disagree with the index (raw=" + e.rawLength() + " stored=" + e.storedLength() + ")");
        }
        try {
            decoder.decode(h, stored.duplicate().position(FRAME_HEADER_BYTES), raw.clear());
        } catch (Frames.FrameCheckException ex) {
            throw frameFault(e, ex.field(), ex.problem());
        }
        framesDecoded++;
        cachedFrame = i;
        return raw.duplicate().position(0).limit(e.rawLength());
    }

    private ImageFormatException frameFault(FrameEntry e, String field, String p) {
        return new ImageFormatException(file, e.fileOffset(), "frame[" + e.index() + "]." + field, "frame=" + e.index()
                + " raw_offset=" + e.rawOffset() + " raw_length=" + e.rawLength() + ": " + p, DAMAGED);
    }

    private int findFrame(long rawOffset) {
        int lo = 0;
        int hi = frames.length - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) >>> 1;
            if (frames[mid].rawOffset() <= rawOffset) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        return lo;
    }

    private static ByteBuffer readFully(Path file, FileChannel ch, long position, int length) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(length).order(ByteOrder.LITTLE_ENDIAN);
        long pos = position;
        while (b.hasRemaining()) {
            int n = ch.read(b, pos);
            if (n < 0) {
                throw new ImageFormatException(file, pos, "file", "truncated: needs bytes up to offset "
                        + (position + length) + " but the file ends at " + pos, DAMAGED);
            }
            pos += n;
        }
        return b.flip();
    }

    @Override
    public void close() throws IOException {
        decoder.close();
        channel.close();
    }

    @Override
    public String toString() {
        return "CompressedPagesReader[" + file + " codec=" + codec.label() + " frames=" + frames.length + " raw="
                + rawBytes + "]";
    }
}
