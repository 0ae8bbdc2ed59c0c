package io.pageflux.sink.pageserver;

import static io.pageflux.sink.pageserver.RawClient.concat;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * GET, the read side of the protocol (CRIU's lazy restore, remote parent reads): answers come from
 * the newest completed session of the pid, holes resolved through its parent chain.
 */
class PageServerGetTest {

    private static final long PID = 21384;
    private static final int PAGE = 4096;
    /** The ADD_F[PE_PRESENT] answer's cmd word: (4 << 16) | 6. */
    private static final int ANSWER_CMD = 0x40006;

    @TempDir
    Path tmp;

    private static byte[] get(long pid, long vaddr, long nrPages) {
        return new PageServerHeader(PageServerWire.OP_GET, 0, nrPages, vaddr, pid).toBytes().array();
    }

    private static byte[] close() {
        return PageServerHeader.close().toBytes().array();
    }

    /** One decoded GET answer. */
    record Answer(int cmd, long nrPages, long vaddr, long dstId, byte[] pages) {
    }

    /** Splits a server's output into {@code count} GET answers and returns them; the rest must be CLOSE's 0. */
    private static List<Answer> answers(byte[] stream, int count) {
        ByteBuffer in = ByteBuffer.wrap(stream).order(ByteOrder.LITTLE_ENDIAN);
        List<Answer> out = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            int cmd = in.getInt();
            assertEquals(0, in.getInt(), "pad");
            long nr = in.getLong();
            long vaddr = in.getLong();
            long dst = in.getLong();
            byte[] pages = new byte[(int) (nr * PAGE)];
            in.get(pages);
            out.add(new Answer(cmd, nr, vaddr, dst, pages));
        }
        assertEquals(4, in.remaining(), "after the answers only CLOSE's 4-byte 0");
        assertEquals(0, in.getInt());
        return out;
    }

    /** pre-dump 1 (pages) then pre-dump 2 (only holes) into a chaining server: GET must read through the hole. */
    @Test
    void getAnswersPagesThroughTheChainAndZeroForAbsentOnes() throws Exception {
        Path dir = tmp.resolve("in");
        byte[] pd1Pages = Vectors.bytes("pre-dump-1", "pages-65537.img");
        try (PageServer server = PageServer.builder().directory(dir).port(0).chain(true).start();
             EventLog log = new EventLog(server)) {
            RawClient.exchange(server.boundPort(), Vectors.bytes("pre-dump-1", "predump1.c2s"));
            log.awaitEnds(1);
            RawClient.exchange(server.boundPort(), Vectors.bytes("pre-dump-2", "predump2.c2s"));
            Path pd2 = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnds(2).get(1)).directory().orElseThrow();
            assertTrue(Files.isSymbolicLink(pd2.resolve("parent")), "pre-dump 2 is chained to pre-dump 1");

            byte[] reply = RawClient.exchange(server.boundPort(), concat(
                    // pre-dump 1's entries (CRIU's JSON): 0x401000+1, 0x4a2000+5, 0x4a7000+1 (lazy|present) ...
                    get(PID, 0x4a3000L, 10),   // inside the 5-page run: answered to its end, 4 pages
                    get(PID, 0x401000L, 1),    // the first page of the pages file
                    get(PID, 0x4a7000L, 1),    // PE_LAZY|PE_PRESENT: the bytes are here
                    get(PID, 0x1000L, 3),      // never dumped
                    get(4242, 0x401000L, 1),   // a pid the server never received
                    close()));
            List<Answer> a = answers(reply, 5);
            for (Answer x : a) {
                assertEquals(ANSWER_CMD, x.cmd(), "ADD_F with PE_PRESENT");
                assertEquals(PageFlags.PE_PRESENT, x.cmd() >>> 16);
            }
            assertEquals(new Answer(ANSWER_CMD, 4, 0x4a3000L, PID, null).nrPages(), a.get(0).nrPages());
            assertEquals(0x4a3000L, a.get(0).vaddr());
            assertEquals(PID, a.get(0).dstId(), "dst_id echoed: the plain pid");
            // 0x4a3000 is page 1 of the run that starts at byte 4096 of the pages file
            assertArrayEquals(Arrays.copyOfRange(pd1Pages, 2 * PAGE, 6 * PAGE), a.get(0).pages());
            assertEquals(1, a.get(1).nrPages());
            assertArrayEquals(Arrays.copyOfRange(pd1Pages, 0, PAGE), a.get(1).pages());
            assertEquals(1, a.get(2).nrPages());
            assertArrayEquals(Arrays.copyOfRange(pd1Pages, 6 * PAGE, 7 * PAGE), a.get(2).pages());
            assertEquals(List.of(0L, 0x1000L, PID), List.of(a.get(3).nrPages(), a.get(3).vaddr(), a.get(3).dstId()));
            assertEquals(List.of(0L, 0x401000L, 4242L), List.of(a.get(4).nrPages(), a.get(4).vaddr(), a.get(4).dstId()));
            SessionEvent.Completed getSession = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnds(3).get(2));
            assertEquals(Optional.empty(), getSession.directory(), "a GET-only session writes nothing");
        }
    }

    @Test
    void oneAnswerCarriesAtMost256PagesAndTheClientAsksAgainForTheRest() throws Exception {
        Path dir = tmp.resolve("in");
        int pages = 300;
        byte[] data = new byte[pages * PAGE];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) ((i / PAGE) * 7 + i % 251);
        }
        PagemapId task = PagemapId.task(PID);
        long base = 0x7f0000000000L;
        try (PageServer server = PageServer.builder().directory(dir).port(0).start();
             EventLog log = new EventLog(server)) {
            RawClient.exchange(server.boundPort(), concat(PageServerHeader.open2(task).toBytes().array(),
                    PageServerHeader.addF(task, base, pages, PageFlags.PE_PRESENT).toBytes().array(), data, close()));
            assertInstanceOf(SessionEvent.Completed.class, log.awaitEnd());
            byte[] reply = RawClient.exchange(server.boundPort(), concat(get(PID, base, pages),
                    get(PID, base + ServerSession.MAX_GET_PAGES * PAGE, pages), close()));
            List<Answer> a = answers(reply, 2);
            assertEquals(256, a.get(0).nrPages());
            assertEquals(pages - 256, a.get(1).nrPages());
            assertArrayEquals(data, concat(a.get(0).pages(), a.get(1).pages()));
        }
    }

    @Test
    void badGetRequestsEndTheSessionWithAReason() throws Exception {
        Path dir = tmp.resolve("in");
        try (PageServer server = PageServer.builder().directory(dir).port(0).maxPagesPerHeader(1024).start();
             EventLog log = new EventLog(server)) {
            String[][] cases = {
                    {"0", "4096", "21384", "GET nr_pages=0 header="},
                    {"2048", "4096", "21384", "GET nr_pages=2048 exceeds max_pages_per_header=1024 header="},
                    {"1", "4097", "21384", "GET vaddr=0x1001 is not page aligned"},
                    {"1", "4096", "0", "GET dst_id=0x0 is not a pid"},
                    {"1", "4096", String.valueOf(1L << 40), "GET dst_id=0x10000000000 is not a pid"},
            };
            for (int i = 0; i < cases.length; i++) {
                String[] c = cases[i];
                byte[] reply = RawClient.exchange(server.boundPort(), concat(get(Long.parseLong(c[2]),
                        Long.parseLong(c[1]), Long.parseLong(c[0])), close()));
                assertEquals(0, reply.length, "no answer to a bad GET, not even to CLOSE");
                SessionEvent.Failed f = assertInstanceOf(SessionEvent.Failed.class, log.awaitEnds(i + 1).get(i));
                assertTrue(f.reason().startsWith(c[3]), f.reason());
            }
            assertEquals(List.of(), PageServerLoopbackTest.children(dir));
        }
    }
}
