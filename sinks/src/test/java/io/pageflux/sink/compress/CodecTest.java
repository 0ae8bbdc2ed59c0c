package io.pageflux.sink.compress;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class CodecTest {

    @Test
    void parsesEveryAcceptedForm() {
        assertEquals(Codec.zstd(3), Codec.parse("zstd"));
        assertEquals(Codec.zstd(1), Codec.parse("zstd:1"));
        assertEquals(Codec.zstd(22), Codec.parse(" ZSTD:22 "));
        assertEquals(Codec.lz4(), Codec.parse("lz4"));
        assertEquals(Codec.gzip(6), Codec.parse("gzip"));
        assertEquals(Codec.gzip(9), Codec.parse("gzip:9"));
        assertEquals(Codec.none(), Codec.parse("none"));
        for (String s : List.of("zstd:1", "zstd:19", "lz4", "gzip:1", "none")) {
            assertEquals(s, Codec.parse(s).toString(), "toString gives back the parsed form");
        }
        assertEquals(".zst", Codec.parse("zstd").fileSuffix());
        assertEquals(".lz4", Codec.parse("lz4").fileSuffix());
        assertEquals(".gz", Codec.parse("gzip").fileSuffix());
    }

    @ParameterizedTest
    @ValueSource(strings = {"zstd:0", "zstd:23", "zstd:x", "zstd:", "lz4:1", "gzip:10", "gzip:0", "brotli", "", "none:1"})
    void rejectsOtherTextNamingItAndTheAcceptedForms(String text) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Codec.parse(text));
        assertTrue(e.getMessage().contains("'" + text + "'"), e.getMessage());
        assertTrue(e.getMessage().contains("zstd:<1-22>") && e.getMessage().contains("gzip:<1-9>")
                && e.getMessage().contains("lz4"), e.getMessage());
    }

    @ParameterizedTest
    @ValueSource(strings = {"zstd:1", "zstd:3", "lz4", "gzip:1", "gzip:6", "none"})
    void roundTripsDirectAndHeapBuffers(String spec) {
        Codec codec = Codec.parse(spec);
        byte[] raw = PageData.text(1, 16);
        for (boolean direct : new boolean[] {true, false}) {
            ByteBuffer src = direct ? ByteBuffer.allocateDirect(raw.length) : ByteBuffer.allocate(raw.length);
            src.put(raw).flip();
            ByteBuffer dst = direct ? ByteBuffer.allocateDirect(raw.length + 100) : ByteBuffer.allocate(raw.length + 100);
            dst.position(7); // compress at an offset: positions must be honoured
            int n;
            try (Codec.Compressor c = codec.newCompressor()) {
                n = c.compress(src, dst);
            }
            assertEquals(0, src.position(), "src position unchanged");
            assertEquals(7, dst.position(), "dst position unchanged");
            if (codec.algorithm() == Codec.Algorithm.NONE) {
                assertEquals(raw.length, n);
            } else {
                assertTrue(n > 0 && n < raw.length / 2, spec + " should shrink JSON text to under half: " + n);
            }
            ByteBuffer back = direct ? ByteBuffer.allocateDirect(raw.length) : ByteBuffer.allocate(raw.length);
            try (Codec.Decompressor d = Codec.newDecompressor(codec.algorithm())) {
                d.decompress(dst.duplicate().position(7).limit(7 + n), back);
            }
            byte[] out = new byte[raw.length];
            back.get(out);
            assertArrayEquals(raw, out, spec + " direct=" + direct);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"zstd:3", "lz4", "gzip:6"})
    void reportsMinusOneWhenTheResultDoesNotFit(String spec) {
        byte[] raw = PageData.random(2, 4);
        ByteBuffer src = ByteBuffer.allocateDirect(raw.length).put(raw).flip();
        ByteBuffer dst = ByteBuffer.allocateDirect(raw.length - 1); // random bytes never shrink
        try (Codec.Compressor c = Codec.parse(spec).newCompressor()) {
            assertEquals(-1, c.compress(src, dst));
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"zstd:3", "lz4", "gzip:6"})
    void corruptPayloadIsReportedNotReturned(String spec) {
        Codec codec = Codec.parse(spec);
        byte[] raw = PageData.text(3, 4);
        ByteBuffer src = ByteBuffer.allocateDirect(raw.length).put(raw).flip();
        ByteBuffer dst = ByteBuffer.allocateDirect(raw.length);
        int n;
        try (Codec.Compressor c = codec.newCompressor()) {
            n = c.compress(src, dst);
        }
        ByteBuffer payload = dst.duplicate().limit(n / 2); // cut short
        ByteBuffer back = ByteBuffer.allocateDirect(raw.length);
        try (Codec.Decompressor d = Codec.newDecompressor(codec.algorithm())) {
            Codec.CorruptPayloadException e = assertThrows(Codec.CorruptPayloadException.class,
                    () -> d.decompress(payload, back));
            assertTrue(e.getMessage().startsWith(codec.algorithm() == Codec.Algorithm.GZIP ? "deflate"
                    : codec.algorithm().label()), e.getMessage());
        }
    }
}
