package io.pageflux.sink.pageserver;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

class WireDecoderTest {

    /** Headers in order, and the page data per dst_id, as the decoder reported them. */
    static final class Recording implements WireDecoder.Listener {
        final List<PageServerHeader> headers = new ArrayList<>();
        final Map<Long, ByteArrayOutputStream> data = new LinkedHashMap<>();
        long currentDst;

        @Override
        public void onHeader(PageServerHeader header) {
            headers.add(header);
            if (header.op() == PageServerWire.OP_OPEN2 || header.op() == PageServerWire.OP_OPEN) {
                currentDst = header.dstId();
                data.computeIfAbsent(currentDst, k -> new ByteArrayOutputStream());
            }
        }

        @Override
        public void onPayload(ByteBuffer part) {
            byte[] b = new byte[part.remaining()];
            part.get(b);
            data.get(currentDst).writeBytes(b);
        }

        long count(int op) {
            return headers.stream().filter(h -> h.op() == op && h.cmd() != PageServerWire.CMD_CLOSE).count();
        }
    }

    private static Recording decode(byte[] wire, int maxPiece, long seed) {
        Recording rec = new Recording();
        WireDecoder decoder = new WireDecoder(rec, 4096);
        Random random = new Random(seed);
        int at = 0;
        while (at < wire.length) {
            int n = Math.min(wire.length - at, 1 + random.nextInt(maxPiece));
            decoder.feed(ByteBuffer.wrap(wire, at, n));
            at += n;
        }
        assertTrue(decoder.atBoundary(), "capture ends between messages");
        assertEquals(wire.length, decoder.bytesConsumed());
        return rec;
    }

    @Test
    void decodesTheWholePageServerCaptureInOnePiece() {
        byte[] wire = Vectors.bytes("page-server-dump", "wire.c2s");
        Recording rec = decode(wire, wire.length, 1);
        checkPageServerCapture(rec, wire.length);
    }

    @Test
    void decodesTheCaptureFedInSmallIrregularPieces() {
        byte[] wire = Vectors.bytes("page-server-dump", "wire.c2s");
        // pieces of 1..45 bytes split every header and every page at many different offsets
        checkPageServerCapture(decode(wire, 45, 7), wire.length);
        checkPageServerCapture(decode(wire, 10_000, 8), wire.length);
    }

    private static void checkPageServerCapture(Recording rec, int wireLength) {
        // shmem object 32 first (dst 0x2002), then task 21384 (0x538801), then CLOSE
        assertEquals(2, rec.count(PageServerWire.OP_OPEN2));
        assertEquals(0, rec.count(PageServerWire.OP_PARENT));
        long addF = rec.count(PageServerWire.OP_ADD_F);
        long closes = rec.headers.stream().filter(h -> h.cmd() == PageServerWire.CMD_CLOSE).count();
        assertEquals(1, closes);
        assertEquals(rec.headers.size(), 2 + addF + 1, "only OPEN2, ADD_F and CLOSE in a dump");
        assertEquals(PageServerWire.CMD_CLOSE, rec.headers.get(rec.headers.size() - 1).cmd());
        assertEquals(PagemapId.shmem(32), PageServerWire.pagemapOf(rec.headers.get(0).dstId()));
        assertEquals(PagemapId.task(21384), PageServerWire.pagemapOf(rec.headers.get(2).dstId()));

        // every header is 32 bytes; everything else is page data of PE_PRESENT runs
        long presentPages = rec.headers.stream()
                .filter(h -> h.op() == PageServerWire.OP_ADD_F && PageFlags.has(h.flags(), PageFlags.PE_PRESENT))
                .mapToLong(PageServerHeader::nrPages).sum();
        assertEquals(wireLength, 32L * rec.headers.size() + presentPages * 4096);

        // the data per pagemap is exactly what CRIU's page server wrote into the pages files
        assertArrayEquals(Vectors.bytes("page-server-dump", "pages-65537.img"), rec.data.get(0x2002L).toByteArray());
        assertArrayEquals(Vectors.bytes("page-server-dump", "pages-65538.img"), rec.data.get(0x538801L).toByteArray());
        assertTrue(rec.headers.stream().allMatch(h -> h.pad() == 0));
    }

    @Test
    void decodesBothPreDumpCaptures() {
        Recording one = decode(Vectors.bytes("pre-dump-1", "predump1.c2s"), 333, 3);
        assertEquals(PageServerWire.OP_PARENT, one.headers.get(0).op());
        assertEquals(PageServerWire.OP_OPEN2, one.headers.get(1).op());
        assertArrayEquals(Vectors.bytes("pre-dump-1", "pages-65537.img"), one.data.get(0x538801L).toByteArray());

        Recording two = decode(Vectors.bytes("pre-dump-2", "predump2.c2s"), 50, 4);
        assertEquals(PageServerWire.OP_PARENT, two.headers.get(0).op());
        List<PageServerHeader> runs = two.headers.stream().filter(h -> h.op() == PageServerWire.OP_ADD_F).toList();
        assertTrue(runs.stream().allMatch(h -> h.flags() == PageFlags.PE_PARENT), "second pre-dump is all holes");
        assertEquals(0, two.data.get(0x538801L).size());
        assertEquals(832, 32 * two.headers.size());
    }

    @Test
    void encodingReproducesTheCapturedHeaderBytes() {
        byte[] wire = Vectors.bytes("pre-dump-2", "predump2.c2s");
        Recording rec = decode(wire, wire.length, 5);
        ByteBuffer again = ByteBuffer.allocate(wire.length);
        PagemapId task = PagemapId.task(21384);
        for (PageServerHeader h : rec.headers) {
            PageServerHeader rebuilt = switch (PageServerWire.opName(h.cmd())) {
                case "PARENT" -> PageServerHeader.parent(task);
                case "OPEN2" -> PageServerHeader.open2(task);
                case "ADD_F" -> PageServerHeader.addF(task, h.vaddr(), h.nrPages(), h.flags());
                case "CLOSE" -> PageServerHeader.close();
                default -> throw new AssertionError("unexpected " + h);
            };
            PageServerWire.encode(rebuilt, again);
        }
        assertArrayEquals(wire, again.array());
    }

    @Test
    void legacyDstIdTypesAreAcceptedAndOthersRejected() {
        assertEquals(PagemapId.task(21384), PageServerWire.pagemapOf((21384L << 8) | 11));
        assertEquals(PagemapId.shmem(32), PageServerWire.pagemapOf((32L << 8) | 29));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> PageServerWire.pagemapOf((21384L << 8) | 3));
        assertEquals("dst_id=0x538803 has type=3, which is neither a task (1) nor a shared-memory (2) pagemap",
                e.getMessage());
    }

    @Test
    void absurdPageCountsSaturateInsteadOfOverflowing() {
        PageServerHeader huge = new PageServerHeader((PageFlags.PE_PRESENT << 16) | PageServerWire.OP_ADD_F, 0,
                1L << 60, 0, 0x538801);
        assertEquals(Long.MAX_VALUE, huge.payloadBytes(4096));
        PageServerHeader hole = PageServerHeader.addF(PagemapId.task(1), 0, 1L << 60, PageFlags.PE_PARENT);
        assertEquals(0, hole.payloadBytes(4096));
    }
}
