package io.pageflux.sink.stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.SinkResult;
import io.pageflux.sink.TestChunks;
import io.pageflux.sink.compress.Codec;
import io.pageflux.sink.compress.CompressionOptions;
import io.pageflux.sink.compress.PageData;
import io.pageflux.sink.compress.UnpackResult;
import io.pageflux.sink.criu.Vectors;
import io.pageflux.sink.criu.Vectors.SourceRun;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.Channels;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import reactor.test.StepVerifier;

class StreamRoundTripTest {

    private static final DumpContext CONTEXT = DumpContext.of(PageData.PID, List.of(), 123_456_789L);

    @TempDir
    Path tmp;

    private static BufferPool pool(int capacity) {
        return BufferPool.create(DataSize.ofKibibytes(128L * capacity), DataSize.ofKibibytes(128));
    }

    private static byte[] stream(DumpContext context, List<SourceRun> runs, Codec codec, BufferPool pool) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        SinkResult r = StreamSink.to(Channels.newChannel(bytes), CompressionOptions.of(codec, pool))
                .write(context, TestChunks.stream(runs, pool))
                .block(Duration.ofSeconds(30));
        assertEquals(bytes.size(), r.bytesWritten());
        assertEquals(PageData.presentPages(runs), r.pages());
        return bytes.toByteArray();
    }

    private Path plain(DumpContext context, List<SourceRun> runs, BufferPool pool) {
        Path dir = tmp.resolve("plain");
        PageSinks.criuImages(dir).write(context, TestChunks.stream(runs, pool)).block(Duration.ofSeconds(30));
        return dir;
    }

    @ParameterizedTest
    @ValueSource(strings = {"zstd:1", "zstd:3", "lz4", "gzip:6", "none"})
    void unpacksToExactlyWhatThePlainSinkWrites(String spec) throws IOException, InterruptedException {
        List<SourceRun> runs = PageData.runs(21);
        BufferPool pool = pool(6);
        Path plain = plain(CONTEXT, runs, pool);
        byte[] s = stream(CONTEXT, runs, Codec.parse(spec), pool);
        assertEquals("PFXS", new String(s, 0, 4, StandardCharsets.US_ASCII));
        assertEquals("PFXE", new String(s, s.length - 4, 4, StandardCharsets.US_ASCII));
        long plainBytes = Files.size(plain.resolve("pages-1.img")) + Files.size(plain.resolve("pages-2.img"));
        if (!spec.equals("none")) {
            assertTrue(s.length < plainBytes / 2, spec + ": " + s.length + " of " + plainBytes);
        }
        Path out = tmp.resolve("out");
        UnpackResult u = StreamUnpacker.unpack(new ByteArrayInputStream(s), out, false);
        PageData.assertSameTree(plain, out);
        assertEquals(PageData.presentPages(runs), u.pages());
        assertEquals(2, u.pagemaps());
        assertEquals(s.length, u.inputBytes());
        TestChunks.await(() -> pool.leasedBuffers() == 0, "every buffer back in the pool");
    }

    @Test
    void aPreDumpWithAParentAndTheCriuVectorRunsRoundTrip() throws IOException {
        BufferPool pool = pool(4);
        // CRIU's runs with the full-dump region list: shmem pagemap first, as CriuImageSink does
        List<SourceRun> runs = Vectors.runs(Vectors.dir("full-dump"), 0);
        DumpContext full = DumpContext.of(Vectors.PID, Vectors.maps(), 42L);
        Path plain = plain(full, runs, pool);
        Path out = tmp.resolve("out");
        StreamUnpacker.unpack(new ByteArrayInputStream(stream(full, runs, Codec.lz4(), pool)), out, false);
        PageData.assertSameTree(plain, out);
        assertEquals(List.of("inventory.img", "pagemap-21384.img", "pagemap-shmem-32.img", "pages-1.img",
                "pages-2.img"), PageData.names(out));

        // a pre-dump on top of a parent: the link is recreated relative to the output
        Path parent = tmp.resolve("pd1");
        DumpContext pre = new DumpContext(PageData.PID, List.of(), 43L, true, Optional.of(parent));
        List<SourceRun> runs2 = PageData.runs(4);
        Path plain2 = tmp.resolve("plain2");
        PageSinks.criuImages(plain2).write(pre, TestChunks.stream(runs2, pool)).block(Duration.ofSeconds(30));
        Path out2 = tmp.resolve("out2");
        StreamUnpacker.unpack(new ByteArrayInputStream(stream(pre, runs2, Codec.zstd(1), pool)), out2, false);
        PageData.assertSameTree(plain2, out2);
        assertEquals(Path.of("../pd1"), Files.readSymbolicLink(out2.resolve("parent")));
    }

    /** Offsets of the records of a stream: [offset, type, body length]. */
    static List<long[]> records(byte[] s) {
        List<long[]> out = new ArrayList<>();
        ByteBuffer b = ByteBuffer.wrap(s).order(ByteOrder.LITTLE_ENDIAN);
        int at = StreamFormat.HEADER_BYTES;
        while (at < s.length) {
            int type = b.get(at);
            int length = b.getInt(at + StreamFormat.R_LENGTH);
            out.add(new long[] {at, type, length});
            at += StreamFormat.RECORD_HEADER_BYTES + length;
        }
        return out;
    }

    private void assertNotUnpacked(byte[] s, Path out, String messagePart, String field) throws IOException {
        StreamFormatException e = assertThrows(StreamFormatException.class,
                () -> StreamUnpacker.unpack(new ByteArrayInputStream(s), out, false));
        assertTrue(e.getMessage().contains(messagePart), e.getMessage());
        assertTrue(e.getMessage().contains("offset=" + e.offset()), e.getMessage());
        if (field != null) {
            assertEquals(field, e.field(), e.getMessage());
        }
        assertFalse(PageData.exists(out), "nothing may be committed");
        assertEquals(List.of(), PageData.partials(out));
    }

    @Test
    void aTruncatedStreamIsReportedWithTheOffsetAndNothingIsCommitted() throws IOException {
        BufferPool pool = pool(4);
        byte[] s = stream(CONTEXT, PageData.runs(8), Codec.zstd(3), pool);
        List<long[]> records = records(s);
        long firstFrame = records.stream().filter(r -> r[1] == 'F').findFirst().orElseThrow()[0];
        long trailer = records.get(records.size() - 1)[0];
        assertEquals('T', records.get(records.size() - 1)[1]);
        long[] cuts = {0, 10, StreamFormat.HEADER_BYTES, StreamFormat.HEADER_BYTES + 3, firstFrame + 5,
                firstFrame + 100, s.length / 2, trailer, trailer + 20, s.length - 1};
        for (long cut : cuts) {
            Path out = tmp.resolve("cut-" + cut);
            byte[] part = Arrays.copyOf(s, (int) cut);
            StreamFormatException e = assertThrows(StreamFormatException.class,
                    () -> StreamUnpacker.unpack(new ByteArrayInputStream(part), out, false), "cut=" + cut);
            assertTrue(e.getMessage().contains("truncated"), "cut=" + cut + ": " + e.getMessage());
            assertEquals(cut, e.offset(), "the error names where the stream ended: " + e.getMessage());
            assertTrue(e.getMessage().contains("was not created"), e.getMessage());
            assertFalse(PageData.exists(out), "cut=" + cut + ": nothing may be committed");
            assertEquals(List.of(), PageData.partials(out));
        }
    }

    @Test
    void corruptBytesAreCaughtByTheFrameOrTheStreamChecksum() throws IOException {
        BufferPool pool = pool(4);
        byte[] s = stream(CONTEXT, PageData.runs(8), Codec.zstd(3), pool);
        List<long[]> records = records(s);
        List<long[]> frames = records.stream().filter(r -> r[1] == 'F').toList();
        assertTrue(frames.size() > 5, "frames: " + frames.size());

        // a byte of frame #3's payload
        long payloadAt = frames.get(3)[0] + StreamFormat.RECORD_HEADER_BYTES + 32;
        byte[] a = s.clone();
        a[(int) payloadAt + 7] ^= 0x10;
        assertNotUnpacked(a, tmp.resolve("a"), "frame=3", "frame#3.payload_crc");
        StreamFormatException e = assertThrows(StreamFormatException.class,
                () -> StreamUnpacker.unpack(new ByteArrayInputStream(a), tmp.resolve("a"), false));
        assertEquals(payloadAt, e.offset());

        // a byte of frame #5's header
        byte[] b = s.clone();
        b[(int) frames.get(5)[0] + StreamFormat.RECORD_HEADER_BYTES + 9] ^= 0x01;
        assertNotUnpacked(b, tmp.resolve("b"), "header checksum mismatch", "frame#5.header_crc");

        // an entry's flags (PE_PRESENT -> PE_LAZY|PE_PRESENT): still a valid run, so only the
        // checksum over the whole stream, checked at the trailer, notices
        long[] entry = records.stream().filter(r -> r[1] == 'E').skip(2).findFirst().orElseThrow();
        byte[] c = s.clone();
        c[(int) entry[0] + StreamFormat.RECORD_HEADER_BYTES + StreamFormat.E_FLAGS] ^= 0x02;
        assertNotUnpacked(c, tmp.resolve("c"), "some byte before the trailer was altered", "trailer.crc");

        // the header
        byte[] d = s.clone();
        d[20] ^= 0x01;
        assertNotUnpacked(d, tmp.resolve("d"), "header checksum mismatch", "header.crc");
        byte[] e2 = "hello, not a stream at all, but long enough".getBytes(StandardCharsets.US_ASCII);
        assertNotUnpacked(e2, tmp.resolve("e"), "not a pageflux stream", "header.magic");

        // bytes after the trailer
        byte[] f = Arrays.copyOf(s, s.length + 3);
        assertNotUnpacked(f, tmp.resolve("f"), "unexpected data after the trailer", "trailer");

        // an unknown record type
        byte[] g = s.clone();
        g[(int) records.get(2)[0]] = 'Z';
        assertNotUnpacked(g, tmp.resolve("g"), "unknown record type", "record");
    }

    @Test
    void aFailedDumpLeavesAStreamWithoutTrailerThatUnpackRefuses() throws IOException, InterruptedException {
        BufferPool pool = pool(4);
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        StepVerifier.create(StreamSink.to(Channels.newChannel(bytes), CompressionOptions.of(Codec.lz4(), pool))
                        .write(CONTEXT, TestChunks.stream(PageData.runs(8), pool, 9)))
                .expectErrorMessage("reader failed on purpose after chunk=9")
                .verify(Duration.ofSeconds(30));
        TestChunks.await(() -> pool.leasedBuffers() == 0, "every buffer back in the pool");
        byte[] s = bytes.toByteArray();
        assertTrue(s.length > StreamFormat.HEADER_BYTES);
        assertNotUnpacked(s, tmp.resolve("out"), "without a trailer", "trailer");
    }

    @Test
    void aSlowPipeKeepsTheDumpWithinTheBudget() throws IOException, InterruptedException {
        BufferPool pool = pool(3);
        List<SourceRun> runs = PageData.runs(12);
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        WritableByteChannel sink = Channels.newChannel(bytes);
        WritableByteChannel slow = new WritableByteChannel() {
            @Override
            public int write(ByteBuffer src) throws IOException {
                try {
                    Thread.sleep(2); // a slow reader at the other end of the pipe
                } catch (InterruptedException e) {
                    throw new java.io.InterruptedIOException();
                }
                int n = Math.min(src.remaining(), 8192);
                return sink.write(src.duplicate().limit(src.position() + n)) + advance(src, n);
            }

            private int advance(ByteBuffer src, int n) {
                src.position(src.position() + n);
                return 0;
            }

            @Override
            public boolean isOpen() {
                return true;
            }

            @Override
            public void close() {
            }
        };
        java.util.concurrent.atomic.AtomicInteger read = new java.util.concurrent.atomic.AtomicInteger();
        SinkResult r = StreamSink.to(slow, CompressionOptions.of(Codec.zstd(1), pool).withConcurrency(2))
                .write(CONTEXT, TestChunks.stream(runs, pool).doOnNext(c -> read.incrementAndGet()))
                .block(Duration.ofSeconds(60));
        assertEquals(PageData.presentPages(runs), r.pages());
        // every chunk took one buffer to read into and one for its compressed output, both from
        // the dump's pool: the compressed data waiting for the pipe is inside the budget
        assertTrue(pool.acquisitions() >= 2L * read.get(),
                "acquisitions=" + pool.acquisitions() + " chunks=" + read.get());
        assertTrue(pool.peakLeasedBuffers() <= pool.capacity());
        TestChunks.await(() -> pool.leasedBuffers() == 0, "every buffer back in the pool");
        Path out = tmp.resolve("out");
        StreamUnpacker.unpack(new ByteArrayInputStream(bytes.toByteArray()), out, false);
        PageData.assertSameTree(plain(CONTEXT, runs, pool), out);
    }
}
