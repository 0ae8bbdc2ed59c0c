package io.pageflux.sink.stream;

import static io.pageflux.sink.stream.StreamFormat.*;

import io.pageflux.sink.compress.Checksums;
import io.pageflux.sink.compress.Codec;
import io.pageflux.sink.compress.CompressedPagesFormat;
import io.pageflux.sink.compress.CompressionOptions;
import io.pageflux.sink.compress.FrameHeader;
import io.pageflux.sink.compress.Frames;
import io.pageflux.sink.compress.UnpackResult;
import io.pageflux.sink.criu.CriuLayout;
import io.pageflux.sink.criu.ImageDirectoryWriter;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.ReadableByteChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.Optional;

/**
 * Reads a stream written by {@link StreamSink} ({@link StreamFormat}) and writes the plain CRIU
 * image directory it stands for through an {@link ImageDirectoryWriter} — the same directory
 * {@link io.pageflux.sink.criu.CriuImageSink} would have written for the dump, byte for byte.
 *
 * <p>Every frame is verified as it arrives; the directory is committed (renamed into place) only
 * after the trailer's counts and the checksum over the whole stream matched and the stream ended
 * right after it. A truncated or corrupt stream raises a {@link StreamFormatException} naming
 * the byte offset, the record and what failed, and the output directory is not created.
 *
 * <p>Memory: two buffers of the stream's largest frame (1 MiB by default) and a small read buffer.
 */
public final class StreamUnpacker {

    private static final String DAMAGED = "the stream is damaged or was cut short (did the dump fail?)";

    private StreamUnpacker() {
    }

    /** Unpacks the process's standard input (file descriptor 0). */
    public static UnpackResult unpackStdin(Path out, boolean force) throws IOException {
        return unpack(new FileInputStream(FileDescriptor.in).getChannel(), out, force);
    }

    public static UnpackResult unpack(InputStream in, Path out, boolean force) throws IOException {
        return unpack(Channels.newChannel(in), out, force);
    }

    /**
     * Reads {@code in} to its end and writes {@code out}.
     *
     * @param force replace an existing non-empty {@code out}
     * @throws StreamFormatException if the stream is truncated, corrupt or inconsistent (nothing is written)
     * @throws io.pageflux.sink.criu.ImageWriteException if {@code out} cannot be written
     */
    public static UnpackResult unpack(ReadableByteChannel in, Path out, boolean force) throws IOException {
        Run run = new Run(new StreamInput(in, "; " + DAMAGED + ": out=" + out + " was not created"), out, force);
        try {
            return run.run();
        } catch (IOException | RuntimeException | Error e) {
            run.abort();
            throw e;
        } finally {
            run.frames.close();
        }
    }

    /** An entry announced by an 'E' record, waiting for its bytes (or, for a hole, for its turn). */
    private static final class Pending {
        final long vaddr;
        final long pages;
        final int flags;
        final long record;
        long done;

        Pending(long vaddr, long pages, int flags, long record) {
            this.vaddr = vaddr;
            this.pages = pages;
            this.flags = flags;
            this.record = record;
        }
    }

    private static final class Run {
        final StreamInput in;
        final Path out;
        final boolean force;
        final Frames frames = new Frames(Codec.none());
        ImageDirectoryWriter writer;
        ImageDirectoryWriter.PagemapWriter current;
        final ArrayDeque<Pending> pending = new ArrayDeque<>();
        long pendingPages;
        long dumpUptime;
        int maxFrameRaw;
        Optional<Path> parent = Optional.empty();
        ByteBuffer payload;
        ByteBuffer raw;
        long pagemapRecords;
        long entryRecords;
        long pages;
        long frameRecords;
        long rawBytes;

        Run(StreamInput in, Path out, boolean force) {
            this.in = in;
            this.out = out;
            this.force = force;
        }

        UnpackResult run() throws IOException {
            readHeader();
            while (true) {
                long at = in.offset();
                int crcBefore = in.crc();
                if (in.atEnd()) {
                    throw fault(at, "trailer", "truncated stream: the stream ended at offset " + at
                            + " without a trailer");
                }
                ByteBuffer rh = in.read(RECORD_HEADER_BYTES, "record header");
                int type = rh.get(R_TYPE);
                int length = rh.getInt(R_LENGTH);
                if (rh.get(1) != 0 || rh.getShort(2) != 0) {
                    throw fault(at, "record", "bad record header: reserved bytes are not zero (type="
                            + typeName(type) + ")");
                }
                switch (type) {
                    case TYPE_PARENT -> parentRecord(at, length);
                    case TYPE_PAGEMAP -> pagemapRecord(at, length);
                    case TYPE_ENTRY -> entryRecord(at, length);
                    case TYPE_FRAME -> frameRecord(at, length);
                    case TYPE_TRAILER -> {
                        UnpackResult r = trailer(at, length, crcBefore);
                        return r;
                    }
                    default -> throw fault(at, "record", "unknown record type " + typeName(type) + " length="
                            + Integer.toUnsignedString(length));
                }
            }
        }

        private void readHeader() throws IOException {
            ByteBuffer h = in.read(HEADER_BYTES, "header");
            int magic = h.getInt(H_MAGIC);
            if (magic != MAGIC) {
                throw new StreamFormatException(0, "header.magic", "not a pageflux stream: offset=0 field=header.magic "
                        + "found " + Checksums.hex(magic) + " expected " + Checksums.hex(MAGIC)
                        + " ('PFXS'): feed the output of `pageflux dump --to -`; out=" + out + " was not created");
            }
            int crc = Checksums.crc32c(h, 0, H_CRC);
            if (crc != h.getInt(H_CRC)) {
                throw fault(H_CRC, "header.crc", "header checksum mismatch (stored " + Checksums.hex(h.getInt(H_CRC))
                        + ", computed " + Checksums.hex(crc) + ")");
            }
            int version = h.getShort(H_VERSION) & 0xffff;
            if (version != VERSION) {
                throw fault(H_VERSION, "header.version", "version=" + version + " is not supported (this pageflux "
                        + "reads version " + VERSION + "): use a matching pageflux");
            }
            try {
                Codec.Algorithm.ofId(h.get(H_CODEC) & 0xff);
            } catch (IllegalArgumentException e) {
                throw fault(H_CODEC, "header.codec", e.getMessage());
            }
            if (h.getInt(H_PAGE_SIZE) != PageRun.PAGE_SIZE) {
                throw fault(H_PAGE_SIZE, "header.page_size", "page_size=" + h.getInt(H_PAGE_SIZE)
                        + " but this machine's is " + PageRun.PAGE_SIZE + ": unpack on a machine with that page size");
            }
            maxFrameRaw = h.getInt(H_MAX_FRAME_RAW);
            if (maxFrameRaw <= 0 || maxFrameRaw % PageRun.PAGE_SIZE != 0
                    || maxFrameRaw > CompressionOptions.MAX_FRAME_PAGES * PageRun.PAGE_SIZE) {
                throw fault(H_MAX_FRAME_RAW, "header.max_frame_raw", "max_frame_raw="
                        + Integer.toUnsignedString(maxFrameRaw) + " is not a whole number of pages up to "
                        + CompressionOptions.MAX_FRAME_PAGES + " pages");
            }
            dumpUptime = h.getLong(H_DUMP_UPTIME);
        }

        private void parentRecord(long at, int length) throws IOException {
            if (writer != null || parent.isPresent()) {
                throw fault(at, "parent", "a parent record must come once, before the first pagemap record");
            }
            if (length <= 0 || length > MAX_PARENT_BYTES) {
                throw fault(at, "parent.length", "length=" + Integer.toUnsignedString(length) + " is outside 1.."
                        + MAX_PARENT_BYTES);
            }
            ByteBuffer b = in.read(length, "parent record");
            parent = Optional.of(Path.of(StandardCharsets.UTF_8.decode(b).toString()));
        }

        private void pagemapRecord(long at, int length) throws IOException {
            expectLength(at, "pagemap", length, PAGEMAP_BYTES);
            ByteBuffer b = in.read(PAGEMAP_BYTES, "pagemap record");
            checkFilled(at, "pagemap");
            int kind = b.get(PM_KIND);
            long id = b.getLong(PM_ID);
            for (int i = 1; i < PM_ID; i++) {
                if (b.get(i) != 0) {
                    throw fault(at, "pagemap", "reserved bytes are not zero");
                }
            }
            PagemapId pm;
            if (kind == KIND_TASK) {
                pm = PagemapId.task(id);
            } else if (kind == KIND_SHMEM) {
                pm = PagemapId.shmem(id);
            } else {
                throw fault(at, "pagemap.kind", "kind=" + kind + " is neither 1 (task) nor 2 (shmem)");
            }
            current = writer().openPagemap(pm);
            pagemapRecords++;
        }

        private void entryRecord(long at, int length) throws IOException {
            expectLength(at, "entry", length, ENTRY_BYTES);
            ByteBuffer b = in.read(ENTRY_BYTES, "entry record");
            if (current == null) {
                throw fault(at, "entry", "an entry record before any pagemap record");
            }
            long vaddr = b.getLong(E_VADDR);
            long nr = b.getLong(E_NR_PAGES);
            int flags = b.getInt(E_FLAGS);
            if (nr <= 0 || nr > (1L << 52)) {
                throw fault(at, "entry.nr_pages", "nr_pages=" + Long.toUnsignedString(nr) + " is out of range");
            }
            entryRecords++;
            Pending p = new Pending(vaddr, nr, flags, entryRecords - 1);
            if (PageFlags.has(flags, PageFlags.PE_PRESENT)) {
                pending.add(p);
                pendingPages += nr;
                pages += nr;
            } else if (pending.isEmpty()) {
                add(at, p, nr, null);
            } else {
                pending.add(p); // a hole after entries still waiting for bytes keeps its place
            }
        }

        private void frameRecord(long at, int length) throws IOException {
            String name = "frame#" + frameRecords;
            if (length < CompressedPagesFormat.FRAME_HEADER_BYTES
                    || length > CompressedPagesFormat.FRAME_HEADER_BYTES + maxFrameRaw) {
                throw fault(at, name, "length=" + Integer.toUnsignedString(length) + " is outside "
                        + CompressedPagesFormat.FRAME_HEADER_BYTES + ".." + (CompressedPagesFormat.FRAME_HEADER_BYTES
                        + maxFrameRaw));
            }
            long headerAt = in.offset();
            ByteBuffer hb = in.read(CompressedPagesFormat.FRAME_HEADER_BYTES, name + " header");
            FrameHeader h;
            try {
                h = FrameHeader.read(hb, maxFrameRaw);
            } catch (Frames.FrameCheckException e) {
                throw fault(headerAt, name + "." + e.field(), "frame=" + frameRecords + ": " + e.problem());
            }
            if (length != CompressedPagesFormat.FRAME_HEADER_BYTES + h.storedLength()) {
                throw fault(at, name, "record length=" + length + " does not match the frame's stored_length="
                        + h.storedLength());
            }
            if (h.rawLength() % PageRun.PAGE_SIZE != 0) {
                throw fault(headerAt, name + ".raw_length", "raw_length=" + h.rawLength()
                        + " is not a whole number of pages");
            }
            if (h.rawLength() / PageRun.PAGE_SIZE > pendingPages) {
                throw fault(at, name, "the frame carries " + h.rawLength() / PageRun.PAGE_SIZE + " pages but the "
                        + "entries announced only " + pendingPages + " pages still without bytes");
            }
            if (payload == null) {
                payload = ByteBuffer.allocateDirect(maxFrameRaw);
                raw = ByteBuffer.allocateDirect(maxFrameRaw);
            }
            long payloadAt = in.offset();
            payload.clear().limit(h.storedLength());
            in.readFully(payload, name + " payload");
            payload.flip();
            try {
                frames.decode(h, payload, raw.clear());
            } catch (Frames.FrameCheckException e) {
                throw fault(payloadAt, name + "." + e.field(), "frame=" + frameRecords + " (record at offset " + at
                        + ", payload at offset " + payloadAt + "): " + e.problem());
            }
            raw.limit(h.rawLength());
            frameRecords++;
            rawBytes += h.rawLength();
            distribute(at, raw);
        }

        /** Hands the frame's pages to the waiting entries, and holes that come next to the writer. */
        private void distribute(long at, ByteBuffer bytes) {
            while (!pending.isEmpty()) {
                Pending p = pending.peek();
                if (!PageFlags.has(p.flags, PageFlags.PE_PRESENT)) {
                    add(at, p, p.pages, null);
                    pending.poll();
                    continue;
                }
                if (!bytes.hasRemaining()) {
                    break;
                }
                long n = Math.min(p.pages - p.done, bytes.remaining() / PageRun.PAGE_SIZE);
                ByteBuffer part = bytes.duplicate().limit(bytes.position() + (int) (n * PageRun.PAGE_SIZE));
                add(at, p, n, part);
                bytes.position(part.limit());
                p.done += n;
                pendingPages -= n;
                if (p.done == p.pages) {
                    pending.poll();
                }
            }
        }

        /**
         * Writes {@code n} pages of {@code p} from its first page without bytes; the directory
         * writer merges the pieces of one entry back together (contiguous, same flags).
         */
        private void add(long at, Pending p, long n, ByteBuffer bytes) {
            try {
                current.add(p.vaddr + p.done * PageRun.PAGE_SIZE, n, p.flags, bytes);
            } catch (IllegalArgumentException e) {
                throw fault(at, "entry#" + p.record, "entry record #" + p.record + " is not a valid run: "
                        + e.getMessage());
            }
        }

        private UnpackResult trailer(long at, int length, int crcBefore) throws IOException {
            expectLength(at, "trailer", length, TRAILER_BYTES);
            ByteBuffer t = in.read(TRAILER_BYTES, "trailer");
            checkFilled(at, "trailer");
            if (t.getInt(T_END_MAGIC) != END_MAGIC) {
                throw fault(at + RECORD_HEADER_BYTES + T_END_MAGIC, "trailer.magic", "found "
                        + Checksums.hex(t.getInt(T_END_MAGIC)) + " expected " + Checksums.hex(END_MAGIC) + " ('PFXE')");
            }
            if (t.getInt(T_CRC) != crcBefore) {
                throw fault(at + RECORD_HEADER_BYTES + T_CRC, "trailer.crc", "the checksum over the stream's first "
                        + at + " bytes does not match (stored " + Checksums.hex(t.getInt(T_CRC)) + ", computed "
                        + Checksums.hex(crcBefore) + "): some byte before the trailer was altered");
            }
            long[] expected = {t.getLong(T_PAGEMAPS), t.getLong(T_ENTRIES), t.getLong(T_PAGES), t.getLong(T_FRAMES),
                    t.getLong(T_RAW_BYTES)};
            long[] actual = {pagemapRecords, entryRecords, pages, frameRecords, rawBytes};
            String[] names = {"pagemaps", "entries", "pages", "frames", "raw_bytes"};
            for (int i = 0; i < names.length; i++) {
                if (expected[i] != actual[i]) {
                    throw fault(at + RECORD_HEADER_BYTES + 8L * i, "trailer." + names[i], "the trailer says "
                            + names[i] + "=" + expected[i] + " but the stream held " + actual[i]);
                }
            }
            long end = in.offset();
            if (!in.atEnd()) {
                throw fault(end, "trailer", "unexpected data after the trailer (a trailer must end the stream)");
            }
            ImageDirectoryWriter w = writer();
            w.commit();
            return new UnpackResult(w.directory(), w.pagemaps().size(), w.entries(), w.pages(), frameRecords, end);
        }

        private void checkFilled(long at, String record) {
            if (pendingPages > 0) {
                Pending p = pending.peek();
                throw fault(at, record, "truncated or inconsistent stream: " + pendingPages + " pages announced by "
                        + "entry records (first: entry#" + p.record + String.format(" vaddr=0x%x", p.vaddr + p.done
                        * PageRun.PAGE_SIZE) + ") got no frame before this " + record + " record");
            }
            // holes waiting behind filled entries
            while (!pending.isEmpty()) {
                Pending p = pending.poll();
                add(at, p, p.pages, null);
            }
        }

        private void expectLength(long at, String record, int length, int expected) {
            if (length != expected) {
                throw fault(at, record + ".length", "a " + record + " record has length=" + expected + ", found "
                        + Integer.toUnsignedString(length));
            }
        }

        private ImageDirectoryWriter writer() {
            if (writer == null) {
                writer = ImageDirectoryWriter.create(out, CriuLayout.writerOptions(out, dumpUptime, parent,
                        ImageDirectoryWriter.Options.LOCAL_FIRST_PAGES_ID, force));
            }
            return writer;
        }

        void abort() {
            if (writer != null) {
                writer.abort();
            }
        }

        private StreamFormatException fault(long offset, String field, String problem) {
            return new StreamFormatException(offset, field, "bad stream: offset=" + offset + " field=" + field + ": "
                    + problem + "; " + DAMAGED + ": out=" + out + " was not created");
        }
    }
}
