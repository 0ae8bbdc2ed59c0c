package io.pageflux.sink.compress;

import io.pageflux.sink.criu.ImageDirectoryWriter;
import io.pageflux.sink.criu.ImageFormat;
import io.pageflux.sink.criu.proto.PagemapProtos.PagemapEntry;
import io.pageflux.sink.criu.proto.PagemapProtos.PagemapHead;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Writes one standard CRIU pagemap image whose page bytes live elsewhere (in a compressed pages
 * file). The encoding is the one {@link ImageDirectoryWriter.PagemapWriter} produces — same
 * header, both page counts, contiguous equal-flag runs merged into one entry, entries split at
 * {@link ImageDirectoryWriter#MAX_ENTRY_PAGES} — so the file is byte-identical to a plain dump's
 * (the round-trip tests compare them). It exists only because the directory writer has no mode
 * for page bytes written by someone else.
 */
final class PagemapFileWriter {

    private static final int PAGE = PageRun.PAGE_SIZE;
    private static final int KNOWN_FLAGS = PageFlags.PE_PARENT | PageFlags.PE_LAZY | PageFlags.PE_PRESENT;

    private final Path file;
    private final PagemapId id;
    private final FileChannel channel;
    private final ByteBuffer buffer = ByteBuffer.allocate(8192);
    private long position;
    private boolean hasPending;
    private long pendingVaddr;
    private long pendingPages;
    private int pendingFlags;
    private boolean hasAny;
    private long lastByte;
    private long entries;
    private long pages;

    PagemapFileWriter(Path file, PagemapId id, long pagesId) throws IOException {
        this.file = file;
        this.id = id;
        this.channel = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
        append(ImageFormat.Kind.PAGEMAP.header());
        append(ByteBuffer.wrap(ImageFormat.frame(PagemapHead.newBuilder().setPagesId((int) pagesId).build())));
    }

    /**
     * Adds a run; runs come in ascending address order without overlap.
     *
     * @throws IllegalArgumentException if the run is out of order, unaligned or has invalid flags
     */
    void add(long vaddr, long nrPages, int flags) throws IOException {
        String run = String.format("pagemap=%s vaddr=0x%x pages=%d flags=%s", id, vaddr, nrPages,
                PageFlags.describe(flags));
        if (nrPages <= 0 || vaddr % PAGE != 0 || (flags & ~KNOWN_FLAGS) != 0 || (flags & KNOWN_FLAGS) == 0
                || (PageFlags.has(flags, PageFlags.PE_PRESENT) && PageFlags.has(flags, PageFlags.PE_PARENT))) {
            throw new IllegalArgumentException("invalid run (unaligned, empty or bad flags): " + run);
        }
        if (hasAny && Long.compareUnsigned(vaddr, lastByte) <= 0) {
            throw new IllegalArgumentException(String.format("run out of order: %s starts at or before the end of "
                    + "the previous run (last byte 0x%x)", run, lastByte));
        }
        if (hasPending && flags == pendingFlags && vaddr == pendingVaddr + pendingPages * PAGE) {
            pendingPages += nrPages;
        } else {
            emitPending();
            hasPending = true;
            pendingVaddr = vaddr;
            pendingPages = nrPages;
            pendingFlags = flags;
        }
        if (PageFlags.has(flags, PageFlags.PE_PRESENT)) {
            pages += nrPages;
        }
        hasAny = true;
        lastByte = vaddr + nrPages * PAGE - 1;
    }

    private void emitPending() throws IOException {
        if (!hasPending) {
            return;
        }
        long vaddr = pendingVaddr;
        long left = pendingPages;
        while (left > 0) {
            long n = Math.min(left, ImageDirectoryWriter.MAX_ENTRY_PAGES);
            append(ByteBuffer.wrap(ImageFormat.frame(PagemapEntry.newBuilder()
                    .setVaddr(vaddr)
                    .setCompatNrPages((int) n)
                    .setFlags(pendingFlags)
                    .setNrPages(n)
                    .build())));
            entries++;
            vaddr += n * PAGE;
            left -= n;
        }
        hasPending = false;
    }

    private void append(ByteBuffer src) throws IOException {
        if (src.remaining() > buffer.remaining()) {
            flush();
        }
        if (src.remaining() > buffer.capacity()) {
            writeFully(src);
        } else {
            buffer.put(src);
        }
    }

    private void flush() throws IOException {
        buffer.flip();
        writeFully(buffer);
        buffer.clear();
    }

    private void writeFully(ByteBuffer src) throws IOException {
        while (src.hasRemaining()) {
            position += channel.write(src);
        }
    }

    /** Writes the pending entry and fsyncs and closes the file. */
    void finish() throws IOException {
        emitPending();
        flush();
        channel.force(true);
        channel.close();
    }

    void close() throws IOException {
        channel.close();
    }

    Path file() {
        return file;
    }

    long bytesWritten() {
        return position + buffer.position();
    }

    long entries() {
        return entries;
    }

    long pages() {
        return pages;
    }
}
