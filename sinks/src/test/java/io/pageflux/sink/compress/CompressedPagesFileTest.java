package io.pageflux.sink.compress;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.criu.ImageFormatException;
import io.pageflux.source.PageRun;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The compressed pages file on its own: layout, seeking, and every check on read. */
class CompressedPagesFileTest {

    private static final int PAGE = PageRun.PAGE_SIZE;
    private static final int FRAME_PAGES = 16;

    @TempDir
    Path tmp;

    /** 10 frames of 16 pages (text, structs, random), the last one 5 pages. */
    private byte[] raw() {
        byte[] raw = new byte[(9 * FRAME_PAGES + 5) * PAGE];
        for (int f = 0; f < 10; f++) {
            int pages = f == 9 ? 5 : FRAME_PAGES;
            byte[] part = switch (f % 3) {
                case 0 -> PageData.text(f, pages);
                case 1 -> PageData.structured(f, pages);
                default -> PageData.random(f, pages);
            };
            System.arraycopy(part, 0, raw, f * FRAME_PAGES * PAGE, part.length);
        }
        return raw;
    }

    private Path write(Codec codec, byte[] raw) throws IOException {
        Path file = tmp.resolve(CompressedPagesFormat.pagesFileName(1, codec.algorithm()));
        ByteBuffer src = ByteBuffer.allocateDirect(raw.length).put(raw).flip();
        ByteBuffer out = ByteBuffer.allocateDirect(raw.length);
        try (Frames frames = new Frames(codec);
             CompressedPagesWriter w = new CompressedPagesWriter(file, codec.algorithm(), FRAME_PAGES * PAGE, true)) {
            for (int at = 0; at < raw.length; at += FRAME_PAGES * PAGE) {
                int len = Math.min(FRAME_PAGES * PAGE, raw.length - at);
                int start = out.position();
                FrameHeader h = frames.encode(src.duplicate().position(at).limit(at + len), out);
                w.writeFrame(h, out.duplicate().position(start).limit(out.position()));
            }
            w.finish();
        }
        return file;
    }

    @ParameterizedTest
    @ValueSource(strings = {"zstd:1", "zstd:3", "lz4", "gzip:6"})
    void allBytesComeBackAndRandomFramesAreStored(String spec) throws IOException {
        byte[] raw = raw();
        Path file = write(Codec.parse(spec), raw);
        try (CompressedPagesReader r = CompressedPagesReader.open(file)) {
            assertEquals(raw.length, r.rawBytes());
            assertEquals(10, r.frameCount());
            assertEquals(Codec.parse(spec).algorithm(), r.codec());
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            assertEquals(raw.length, r.transferTo(Channels.newChannel(bytes)));
            assertArrayEquals(raw, bytes.toByteArray());
            // random data does not shrink: those frames are stored as they are
            assertEquals(FRAME_PAGES * PAGE, r.frame(2).storedLength());
            assertTrue(r.frame(0).storedLength() < FRAME_PAGES * PAGE / 2, "text frame compressed: " + r.frame(0));
        }
        // the layout: header, frames, index, footer; the last 4 bytes are the end magic
        byte[] all = Files.readAllBytes(file);
        assertEquals("PFXC", new String(all, 0, 4, java.nio.charset.StandardCharsets.US_ASCII));
        assertEquals("PFXF", new String(all, CompressedPagesFormat.FILE_HEADER_BYTES, 4,
                java.nio.charset.StandardCharsets.US_ASCII));
        assertEquals("PFXE", new String(all, all.length - 4, 4, java.nio.charset.StandardCharsets.US_ASCII));
    }

    @Test
    void seeksIntoTheMiddleDecompressingOnlyTheFramesItTouches() throws IOException {
        byte[] raw = raw();
        Path file = write(Codec.zstd(3), raw);
        try (CompressedPagesReader r = CompressedPagesReader.open(file)) {
            // 3 pages inside frame 6
            long offset = (6L * FRAME_PAGES + 4) * PAGE;
            ByteBuffer dst = ByteBuffer.allocate(3 * PAGE);
            r.read(offset, dst);
            assertArrayEquals(Arrays.copyOfRange(raw, (int) offset, (int) offset + 3 * PAGE), dst.array());
            assertEquals(1, r.framesDecoded());
            // across the boundary of frames 7 and 8, then the 5-page tail
            offset = (8L * FRAME_PAGES - 2) * PAGE;
            dst = ByteBuffer.allocate(4 * PAGE);
            r.read(offset, dst);
            assertArrayEquals(Arrays.copyOfRange(raw, (int) offset, (int) offset + 4 * PAGE), dst.array());
            assertEquals(3, r.framesDecoded());
            dst = ByteBuffer.allocate(5 * PAGE);
            r.read(9L * FRAME_PAGES * PAGE, dst);
            assertArrayEquals(Arrays.copyOfRange(raw, raw.length - 5 * PAGE, raw.length), dst.array());
            assertEquals(4, r.framesDecoded());
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> r.read(raw.length - PAGE, ByteBuffer.allocate(2 * PAGE)));
            assertTrue(e.getMessage().contains("rawBytes=" + raw.length), e.getMessage());
        }
    }

    @Test
    void aFlippedPayloadByteIsAChecksumErrorNamingFrameAndOffset() throws IOException {
        byte[] raw = raw();
        Path file = write(Codec.zstd(3), raw);
        long frameAt;
        try (CompressedPagesReader r = CompressedPagesReader.open(file)) {
            frameAt = r.frame(3).fileOffset();
        }
        flip(file, frameAt + CompressedPagesFormat.FRAME_HEADER_BYTES + 100);
        try (CompressedPagesReader r = CompressedPagesReader.open(file)) {
            // frames before it read fine
            r.read(0, ByteBuffer.allocate(3 * FRAME_PAGES * PAGE));
            ImageFormatException e = assertThrows(ImageFormatException.class,
                    () -> r.read(3L * FRAME_PAGES * PAGE, ByteBuffer.allocate(PAGE)));
            assertEquals(frameAt, e.offset());
            assertEquals("frame[3].payload_crc", e.field());
            assertTrue(e.getMessage().contains("offset=" + frameAt) && e.getMessage().contains("frame=3")
                    && e.getMessage().contains("checksum mismatch"), e.getMessage());
        }
    }

    @Test
    void aFlippedHeaderByteIsReported() throws IOException {
        Path file = write(Codec.lz4(), raw());
        long frameAt;
        try (CompressedPagesReader r = CompressedPagesReader.open(file)) {
            frameAt = r.frame(5).fileOffset();
        }
        flip(file, frameAt + CompressedPagesFormat.FR_RAW_XXHASH64 + 2);
        try (CompressedPagesReader r = CompressedPagesReader.open(file)) {
            ImageFormatException e = assertThrows(ImageFormatException.class,
                    () -> r.transferTo(Channels.newChannel(new ByteArrayOutputStream())));
            assertEquals("frame[5].header_crc", e.field());
            assertEquals(frameAt, e.offset());
            assertTrue(e.getMessage().contains("frame=5") && e.getMessage().contains("header checksum mismatch"),
                    e.getMessage());
        }
    }

    @Test
    void aBadDecompressedChecksumIsCaughtEvenWhenThePayloadCrcMatches() throws IOException {
        // rewrite a stored (random) frame's payload and its payload crc consistently: only the
        // xxhash64 of the raw bytes can notice
        Path file = write(Codec.zstd(3), raw());
        long frameAt;
        int stored;
        try (CompressedPagesReader r = CompressedPagesReader.open(file)) {
            frameAt = r.frame(2).fileOffset();
            stored = r.frame(2).storedLength();
        }
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            byte[] header = new byte[CompressedPagesFormat.FRAME_HEADER_BYTES];
            f.seek(frameAt);
            f.readFully(header);
            byte[] payload = new byte[stored];
            f.readFully(payload);
            payload[10] ^= 1;
            ByteBuffer h = ByteBuffer.wrap(header).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            FrameHeader old = FrameHeader.read(h, FRAME_PAGES * PAGE);
            FrameHeader forged = new FrameHeader(old.codec(), old.rawLength(), old.storedLength(), old.rawXxhash64(),
                    Checksums.crc32c(ByteBuffer.wrap(payload)));
            f.seek(frameAt);
            f.write(forged.toBuffer().array());
            f.write(payload);
        }
        try (CompressedPagesReader r = CompressedPagesReader.open(file)) {
            ImageFormatException e = assertThrows(ImageFormatException.class,
                    () -> r.read(2L * FRAME_PAGES * PAGE, ByteBuffer.allocate(PAGE)));
            assertEquals("frame[2].raw_xxhash64", e.field());
        }
    }

    @Test
    void aTruncatedFileSaysTruncated() throws IOException {
        Path file = write(Codec.zstd(1), raw());
        long size = Files.size(file);
        for (long cut : new long[] {size - 1, size - 40, size / 2, 50, 10, 0}) {
            Path copy = tmp.resolve("cut-" + cut);
            byte[] all = Files.readAllBytes(file);
            Files.write(copy, Arrays.copyOf(all, (int) cut));
            ImageFormatException e = assertThrows(ImageFormatException.class, () -> CompressedPagesReader.open(copy));
            assertTrue(e.getMessage().contains("truncated"), "cut=" + cut + ": " + e.getMessage());
            assertEquals(copy, e.file());
        }
    }

    @Test
    void aDamagedIndexOrFooterIsReported() throws IOException {
        Path file = write(Codec.gzip(6), raw());
        long size = Files.size(file);
        long indexAt = size - CompressedPagesFormat.FOOTER_BYTES - 10L * CompressedPagesFormat.INDEX_ENTRY_BYTES;
        Path a = tmp.resolve("index");
        Files.copy(file, a);
        flip(a, indexAt + 3 * CompressedPagesFormat.INDEX_ENTRY_BYTES + 1);
        ImageFormatException e = assertThrows(ImageFormatException.class, () -> CompressedPagesReader.open(a));
        assertEquals("index", e.field());
        assertEquals(indexAt, e.offset());
        Path b = tmp.resolve("footer");
        Files.copy(file, b);
        flip(b, size - CompressedPagesFormat.FOOTER_BYTES + CompressedPagesFormat.FT_RAW_BYTES);
        e = assertThrows(ImageFormatException.class, () -> CompressedPagesReader.open(b));
        assertEquals("footer.crc", e.field());
        Path c = tmp.resolve("magic");
        Files.write(c, new byte[200]);
        e = assertThrows(ImageFormatException.class, () -> CompressedPagesReader.open(c));
        assertEquals("file_header.magic", e.field());
    }

    @Test
    void anEmptyFileHasHeaderAndFooterOnly() throws IOException {
        Path file = tmp.resolve("empty.zst");
        try (CompressedPagesWriter w = new CompressedPagesWriter(file, Codec.Algorithm.ZSTD, 4 * PAGE, true)) {
            w.finish();
        }
        assertEquals(CompressedPagesFormat.FILE_HEADER_BYTES + CompressedPagesFormat.FOOTER_BYTES, Files.size(file));
        try (CompressedPagesReader r = CompressedPagesReader.open(file)) {
            assertEquals(0, r.rawBytes());
            assertEquals(0, r.frameCount());
            assertEquals(0, r.transferTo(Channels.newChannel(new ByteArrayOutputStream())));
        }
    }

    static void flip(Path file, long offset) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(offset);
            int b = f.read();
            f.seek(offset);
            f.write(b ^ 0x40);
        }
    }
}
