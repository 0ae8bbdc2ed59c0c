package io.pageflux.sink.pageserver;

import static io.pageflux.sink.pageserver.RawClient.concat;
import static io.pageflux.sink.pageserver.RawClient.header;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Malformed and hostile input: each bad session ends with a logged reason and leaves nothing in
 * the directory; the server keeps serving.
 */
class PageServerDefenceTest {

    private static final PagemapId TASK = PagemapId.task(21384);

    @TempDir
    Path tmp;

    private Path in;
    private PageServer server;
    private EventLog log;

    @BeforeEach
    void start() {
        in = tmp.resolve("in");
        server = PageServer.builder().directory(in).port(0).idleTimeout(Duration.ofMillis(500)).start();
        log = new EventLog(server);
    }

    @AfterEach
    void stop() {
        log.close();
        server.stop();
    }

    /** Sends bytes, then checks the session failed with a reason starting with {@code reason} and left nothing. */
    private String rejects(byte[] bytes, String reason) throws Exception {
        RawClient.exchange(server.boundPort(), bytes);
        SessionEvent.Failed failed = assertInstanceOf(SessionEvent.Failed.class, log.awaitEnd());
        assertTrue(failed.reason().startsWith(reason), "reason: " + failed.reason());
        assertEquals(List.of(), PageServerLoopbackTest.children(in), "nothing left in the directory");
        stillServes();
        return failed.reason();
    }

    /** A correct session after the bad one completes with CRIU's files. */
    private void stillServes() throws Exception {
        int before = log.ends().size();
        byte[] answer = RawClient.exchange(server.boundPort(), Vectors.bytes("pre-dump-1", "predump1.c2s"));
        assertArrayEquals(Vectors.bytes("pre-dump-1", "predump1.s2c"), answer);
        SessionEvent.Completed done = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnds(before + 1).get(before));
        assertArrayEquals(Vectors.bytes("pre-dump-1", "pages-65537.img"),
                Files.readAllBytes(done.directory().orElseThrow().resolve("pages-65537.img")));
    }

    @Test
    void truncatedHeaderThenEof() throws Exception {
        byte[] open = header(PageServerHeader.open2(TASK));
        byte[] add = header(PageServerHeader.addF(TASK, 0x401000, 1, PageFlags.PE_PRESENT));
        rejects(concat(open, Arrays.copyOf(add, 20)),
                "client closed the connection inside a header after 20 of 32 bytes received=52");
    }

    @Test
    void truncatedPagesThenEof() throws Exception {
        byte[] open = header(PageServerHeader.open2(TASK));
        byte[] add = header(PageServerHeader.addF(TASK, 0x401000, 2, PageFlags.PE_PRESENT));
        rejects(concat(open, add, new byte[5000]), "client closed the connection with payload_missing=3192 bytes of"
                + " \"ADD_F[PE_PRESENT] nr_pages=2 vaddr=0x401000 dst_id=0x538801\"");
    }

    @Test
    void hugePageCountIsRefusedBeforeReadingAnything() throws Exception {
        byte[] open = header(PageServerHeader.open2(TASK));
        byte[] add = header(PageServerHeader.addF(TASK, 0x401000, 1L << 40, PageFlags.PE_PRESENT));
        rejects(concat(open, add, new byte[4096]), "nr_pages=1099511627776 exceeds max_pages_per_header=262144 header=\"ADD_F[PE_PRESENT]");
    }

    @Test
    void unknownOpIsRefused() throws Exception {
        byte[] open = header(PageServerHeader.open2(TASK));
        byte[] odd = header(new PageServerHeader(0x99, 0, 0, 0, TASK.dstId()));
        rejects(concat(open, odd), "unknown command cmd=0x99 header=\"op=0x99");
    }

    @Test
    void runBeforeOpenIsRefused() throws Exception {
        rejects(header(PageServerHeader.addF(TASK, 0x401000, 1, PageFlags.PE_PARENT)), "run before OPEN header=");
    }

    @Test
    void badDstIdTypeIsRefused() throws Exception {
        rejects(header(new PageServerHeader(PageServerWire.OP_OPEN2, 0, 0, 0, (21384L << 8) | 9)),
                "dst_id=0x538809 has type=9");
    }

    @Test
    void invalidFlagsAndUnalignedAddressesAreRefused() throws Exception {
        byte[] open = header(PageServerHeader.open2(TASK));
        rejects(concat(open, header(PageServerHeader.addF(TASK, 0x401000, 1, PageFlags.PE_PRESENT | PageFlags.PE_PARENT))),
                "invalid flags=PE_PARENT | PE_PRESENT");
        // a fresh session for the second case
        int before = log.ends().size();
        RawClient.exchange(server.boundPort(), concat(open,
                header(PageServerHeader.addF(TASK, 0x401001, 1, PageFlags.PE_PARENT))));
        SessionEvent.Failed f = assertInstanceOf(SessionEvent.Failed.class, log.awaitEnds(before + 1).get(before));
        assertTrue(f.reason().startsWith("vaddr=0x401001 is not page aligned"), f.reason());
    }

    @Test
    void runsOutOfOrderAreRefusedByTheWriter() throws Exception {
        byte[] open = header(PageServerHeader.open2(TASK));
        rejects(concat(open, header(PageServerHeader.addF(TASK, 0x402000, 1, PageFlags.PE_PARENT)),
                header(PageServerHeader.addF(TASK, 0x401000, 1, PageFlags.PE_PARENT))), "cannot store run: header=");
    }

    @Test
    void dataAfterCloseDiscardsTheSession() throws Exception {
        byte[] session = Vectors.bytes("pre-dump-2", "predump2.c2s");
        RawClient.exchange(server.boundPort(), concat(session, new byte[] {42}));
        SessionEvent.Failed failed = assertInstanceOf(SessionEvent.Failed.class, log.awaitEnd());
        assertEquals("data after CLOSE: bytes=1 (a client sends nothing after CLOSE)", failed.reason());
        assertEquals(List.of(), PageServerLoopbackTest.children(in), "the committed session directory was removed");
    }

    @Test
    void stalledClientTimesOutAndTheServerHangsUp() throws Exception {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", server.boundPort()));
            s.setSoTimeout(30_000);
            s.getOutputStream().write(concat(header(PageServerHeader.open2(TASK)),
                    header(PageServerHeader.addF(TASK, 0x401000, 4, PageFlags.PE_PRESENT)), new byte[6000]));
            InputStream answers = s.getInputStream();
            assertEquals(0, answers.read(), "OPEN2 answered: no parent");
            // ... and now the client stalls; the server ends the session and closes the socket
            assertEquals(-1, answers.read());
        }
        SessionEvent.Failed failed = assertInstanceOf(SessionEvent.Failed.class, log.awaitEnd());
        assertEquals("idle timeout: no data for idle_timeout_ms=500 received=6064 (a stalled client; nothing kept)",
                failed.reason());
        assertEquals(List.of(), PageServerLoopbackTest.children(in));
    }

    @Test
    void stoppingTheServerEndsActiveSessionsWithoutADirectory() throws Exception {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", server.boundPort()));
            s.getOutputStream().write(header(PageServerHeader.open2(TASK)));
            assertEquals(0, s.getInputStream().read());
            server.stop();
        }
        SessionEvent.Failed failed = assertInstanceOf(SessionEvent.Failed.class, log.awaitEnd());
        assertTrue(failed.reason().startsWith("server stopped") || failed.reason().startsWith("client closed"),
                failed.reason());
        assertEquals(List.of(), PageServerLoopbackTest.children(in));
    }

    @Test
    void fiftyConcurrentSessionsGoodAndBadMixed() throws Exception {
        byte[] good = Vectors.bytes("pre-dump-1", "predump1.c2s");
        byte[] goodAnswer = Vectors.bytes("pre-dump-1", "predump1.s2c");
        byte[] bad = Arrays.copyOf(good, good.length / 2); // cut in the middle of the pages
        ExecutorService clients = Executors.newFixedThreadPool(50);
        try {
            List<Future<byte[]>> answers = new ArrayList<>();
            for (int i = 0; i < 50; i++) {
                byte[] send = i % 5 == 4 ? bad : good;
                answers.add(clients.submit(() -> RawClient.exchange(server.boundPort(), send)));
            }
            for (int i = 0; i < 50; i++) {
                byte[] answer = answers.get(i).get();
                if (i % 5 != 4) {
                    assertArrayEquals(goodAnswer, answer, "session " + i);
                }
            }
        } finally {
            clients.shutdownNow();
        }
        List<SessionEvent> ends = log.awaitEnds(50);
        List<SessionEvent.Completed> completed = ends.stream().filter(SessionEvent.Completed.class::isInstance)
                .map(SessionEvent.Completed.class::cast).toList();
        assertEquals(40, completed.size());
        assertEquals(10, ends.stream().filter(SessionEvent.Failed.class::isInstance).count());
        List<Path> dirs = PageServerLoopbackTest.children(in);
        assertEquals(40, dirs.size(), "one directory per good session, none for the bad ones: " + dirs);
        byte[] pages = Vectors.bytes("pre-dump-1", "pages-65537.img");
        for (SessionEvent.Completed c : completed) {
            Path dir = c.directory().orElseThrow();
            assertTrue(dirs.contains(dir));
            assertArrayEquals(pages, Files.readAllBytes(dir.resolve("pages-65537.img")), dir.toString());
        }
        stillServes();
    }

    @Test
    void templatesCannotLeaveTheDirectory() {
        for (String t : List.of("../{seq}", "{pid}/{seq}", ".{seq}", "", "a b")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> PageServer.builder().sessionDirTemplate(t), t);
            assertTrue(e.getMessage().startsWith("session directory template '" + t + "' must give a plain"),
                    e.getMessage());
        }
    }

    @Test
    void templateNamesTheSessionDirectory() throws Exception {
        Path other = tmp.resolve("other");
        try (PageServer s = PageServer.builder().directory(other).port(0).sessionDirTemplate("pd-{pid}-n{seq}").start();
             EventLog l = new EventLog(s)) {
            RawClient.exchange(s.boundPort(), Vectors.bytes("pre-dump-1", "predump1.c2s"));
            RawClient.exchange(s.boundPort(), Vectors.bytes("pre-dump-1", "predump1.c2s"));
            l.awaitEnds(2);
            assertEquals(List.of(other.resolve("pd-21384-n1"), other.resolve("pd-21384-n2")),
                    PageServerReplayTest.visibleChildren(other));
        }
    }

    @Test
    void headerBytesAreLittleEndian() {
        ByteBuffer b = PageServerHeader.addF(TASK, 0x401000, 3, PageFlags.PE_PRESENT | PageFlags.PE_LAZY).toBytes();
        assertArrayEquals(new byte[] {6, 0, 6, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x40, 0, 0, 0, 0, 0,
                1, (byte) 0x88, 0x53, 0, 0, 0, 0, 0}, b.array());
    }
}
