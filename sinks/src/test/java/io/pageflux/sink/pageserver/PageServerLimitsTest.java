package io.pageflux.sink.pageserver;

import static io.pageflux.sink.pageserver.RawClient.concat;
import static io.pageflux.sink.pageserver.RawClient.header;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.DataSize;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The server's defences against too many clients and clients that break off, on both transports: the
 * cap on concurrent sessions (refused connections are closed unread, logged and published; places come
 * back however a session ends), answers that cannot be sent (never a complete directory), and the
 * per-session caps ending only the offending session.
 */
class PageServerLimitsTest {

    private static final PagemapId TASK = PagemapId.task(21384);
    private static final int PAGE = 4096;
    /** The pages of the run {@link Client} sends: 4 pages, each byte (page * 31 + offset) & 0xff. */
    private static final byte[] PAGES = pattern(4 * PAGE);
    /** What {@link Client} sends before it waits: OPEN2, the run's header and 6000 of its bytes. */
    private static final int FIRST_PART = 6000;

    @TempDir
    Path tmp;

    private static byte[] pattern(int n) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) ((i / PAGE) * 31 + i);
        }
        return b;
    }

    private PageServer.Builder server(PageServer.Transport transport) {
        return PageServer.builder().directory(tmp.resolve("in")).port(0).transport(transport);
    }

    /** A session being served: OPEN2 answered, a 4-page run half sent; {@link #finish} completes it. */
    private static final class Client implements AutoCloseable {
        final Socket socket = new Socket();
        /** The client's address as the server sees it, e.g. {@code /127.0.0.1:40312}. */
        final String local;

        Client(int port) throws Exception {
            socket.connect(new InetSocketAddress("127.0.0.1", port));
            local = String.valueOf(socket.getLocalSocketAddress());
            socket.setSoTimeout(30_000);
            socket.getOutputStream().write(concat(header(PageServerHeader.open2(TASK)),
                    header(PageServerHeader.addF(TASK, 0x401000, 4, PageFlags.PE_PRESENT)),
                    Arrays.copyOf(PAGES, FIRST_PART)));
            assertEquals(0, socket.getInputStream().read(), "OPEN2 answered: no parent");
        }

        /** Sends the rest of the run and CLOSE, checks CLOSE's answer and hangs up. */
        void finish() throws Exception {
            socket.getOutputStream().write(concat(Arrays.copyOfRange(PAGES, FIRST_PART, PAGES.length),
                    header(PageServerHeader.close())));
            socket.shutdownOutput();
            assertArrayEquals(new byte[4], socket.getInputStream().readNBytes(4), "CLOSE answered 0");
            assertEquals(-1, socket.getInputStream().read(), "the server hung up after the session");
            socket.close();
        }

        @Override
        public void close() throws Exception {
            socket.close();
        }
    }

    /** The completed session of a {@link Client}: 4 pages with exactly the bytes sent. */
    private static void assertIntact(SessionEvent.Completed done) throws Exception {
        assertEquals(4, done.pages());
        assertArrayEquals(PAGES, Files.readAllBytes(done.directory().orElseThrow().resolve("pages-65537.img")));
    }

    private static SessionEvent.Completed completedFrom(EventLog log, String remote) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (System.nanoTime() < deadline) {
            for (SessionEvent e : log.events) {
                if (e instanceof SessionEvent.Completed c && c.remote().equals(remote)) {
                    return c;
                }
            }
            Thread.sleep(5);
        }
        throw new AssertionError("no completed session from " + remote + ": " + log.events);
    }

    private static List<SessionEvent.Refused> refusals(EventLog log) {
        return log.events.stream().filter(SessionEvent.Refused.class::isInstance).map(SessionEvent.Refused.class::cast)
                .toList();
    }

    /** Waits (bounded) for {@code n} refusals: published by the accepting thread right after the close. */
    private static List<SessionEvent.Refused> awaitRefusals(EventLog log, int n) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (refusals(log).size() < n && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        assertEquals(n, refusals(log).size(), log.events.toString());
        return refusals(log);
    }

    /** Sends a session the server ends early: it may reset the connection before the client wrote everything. */
    private static void sendRefusedSession(int port, byte[] bytes) throws Exception {
        try {
            RawClient.exchange(port, bytes);
        } catch (SocketException resetWhileWriting) {
            // the server read what it needed to refuse the session and closed the socket
        }
    }

    /** The server closed the connection without answering (end of stream, or a reset when it had sent data). */
    private static void assertClosedUnanswered(Socket s) throws Exception {
        InputStream in = s.getInputStream();
        try {
            int b = in.read();
            assertEquals(-1, b, "no answer from the server");
        } catch (SocketException reset) {
            assertTrue(reset.getMessage().contains("reset"), reset.toString());
        }
    }

    private static void awaitPlaces(PageServer server, int n) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (server.admittedConnections() != n && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        assertEquals(n, server.admittedConnections(), "connections holding a place");
    }

    @ParameterizedTest
    @EnumSource(PageServer.Transport.class)
    void aConnectionBeyondMaxSessionsIsClosedUnreadLoggedAndPublishedWhileTheOthersGoOn(PageServer.Transport transport)
            throws Exception {
        try (LogCapture logs = new LogCapture();
             PageServer server = server(transport).maxSessions(2).start();
             EventLog log = new EventLog(server);
             Client first = new Client(server.boundPort());
             Client second = new Client(server.boundPort())) {
            String refusedRemote;
            try (Socket third = new Socket()) {
                third.connect(new InetSocketAddress("127.0.0.1", server.boundPort()));
                third.setSoTimeout(30_000);
                refusedRemote = String.valueOf(third.getLocalSocketAddress());
                try {
                    third.getOutputStream().write(header(PageServerHeader.open2(TASK)));
                } catch (SocketException alreadyClosed) {
                    // the server may have closed it before this write: refused all the same
                }
                assertClosedUnanswered(third);
            }
            SessionEvent.Refused refused = awaitRefusals(log, 1).get(0);
            assertEquals(new SessionEvent.Refused(refusedRemote,
                    "max_sessions=2 reached: connections=2 (the connection was closed unread)"), refused);
            assertEquals(0, refused.session());
            List<String> warnings = logs.containing("page server refused a connection");
            assertEquals(List.of("[ WARN] page server refused a connection: remote=" + refusedRemote
                    + " reason=max_sessions=2 reached: connections=2 (the connection was closed unread)"
                    + " refused_since_last_warning=1 refused_total=1; raise --max-sessions"
                    + " (PageServer.Builder.maxSessions) if this many concurrent clients are expected (next warning"
                    + " in 10 s at the earliest)"), warnings);
            // another refusal right after: published, but no second warning within 10 s
            try (Socket fourth = new Socket()) {
                fourth.connect(new InetSocketAddress("127.0.0.1", server.boundPort()));
                fourth.setSoTimeout(30_000);
                assertClosedUnanswered(fourth);
            }
            awaitRefusals(log, 2);
            assertEquals(1, logs.containing("page server refused a connection").size(), "one warning per 10 s");
            assertEquals(2, server.activeSessions(), "the two sessions go on");

            // the first two finish intact; a client after one of them ended is served
            first.finish();
            assertIntact(completedFrom(log, first.local));
            assertArrayEquals(Vectors.bytes("pre-dump-1", "predump1.s2c"),
                    RawClient.exchange(server.boundPort(), Vectors.bytes("pre-dump-1", "predump1.c2s")));
            second.finish();
            assertIntact(completedFrom(log, second.local));
            List<SessionEvent> ends = log.awaitEnds(3);
            assertTrue(ends.stream().allMatch(SessionEvent.Completed.class::isInstance), ends.toString());
            assertEquals(List.of(1L, 2L, 3L), ends.stream().map(SessionEvent::session).sorted().toList(),
                    "refused connections take no session number");
            assertEquals(2, refusals(log).size(), log.events.toString());
            assertEquals(3, PageServerReplayTest.visibleChildren(tmp.resolve("in")).size());
            awaitPlaces(server, 0);
        }
    }

    @ParameterizedTest
    @EnumSource(PageServer.Transport.class)
    void aPlaceComesBackWhenASessionFailsTimesOutOrTheClientResets(PageServer.Transport transport) throws Exception {
        try (PageServer server = server(transport).maxSessions(1).idleTimeout(Duration.ofMillis(300)).start();
             EventLog log = new EventLog(server)) {
            int port = server.boundPort();
            // a protocol error
            RawClient.exchange(port, header(new PageServerHeader(0x99, 0, 0, 0, TASK.dstId())));
            assertTrue(((SessionEvent.Failed) log.awaitEnds(1).get(0)).reason().startsWith("unknown command"));
            // a stalled client
            try (Client stalled = new Client(port)) {
                assertEquals(-1, stalled.socket.getInputStream().read(), "closed at the idle timeout");
            }
            assertTrue(((SessionEvent.Failed) log.awaitEnds(2).get(1)).reason().startsWith("idle timeout"));
            // a client that resets mid-run
            try (Client reset = new Client(port)) {
                reset.socket.setSoLinger(true, 0);
            }
            assertTrue(((SessionEvent.Failed) log.awaitEnds(3).get(2)).reason().contains("connection"),
                    log.events.toString());
            // each ended session gave its place back: one more is served
            try (Client last = new Client(port)) {
                last.finish();
                assertIntact(completedFrom(log, last.local));
            }
            assertEquals(List.of(), refusals(log));
            awaitPlaces(server, 0);
        }
    }

    /**
     * A client that sends CLOSE and resets the connection without reading the answer: the committed session is
     * discarded, with the reason naming the answer that failed, never published as complete. The session has
     * 200 pagemaps, so that committing them (written and fsynced before CLOSE is answered) takes far longer than
     * the client's reset, which follows its CLOSE at once: the answer always meets a reset connection.
     */
    @ParameterizedTest
    @EnumSource(PageServer.Transport.class)
    void aCloseAnswerThatCannotBeSentLeavesNoCompleteDirectory(PageServer.Transport transport) throws Exception {
        int pagemaps = 200;
        ByteArrayOutputStream session = new ByteArrayOutputStream();
        for (int i = 0; i < pagemaps; i++) {
            PagemapId shm = PagemapId.shmem(500 + i);
            session.writeBytes(header(PageServerHeader.open2(shm)));
            session.writeBytes(header(PageServerHeader.addF(shm, 0, 1, PageFlags.PE_PRESENT)));
            session.writeBytes(Arrays.copyOf(PAGES, PAGE));
        }
        Path in = tmp.resolve("in");
        try (PageServer server = server(transport).start(); EventLog log = new EventLog(server)) {
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress("127.0.0.1", server.boundPort()));
                s.setSoTimeout(30_000);
                s.setSoLinger(true, 0); // close() resets: the server's CLOSE answer finds no one to take it
                s.getOutputStream().write(session.toByteArray());
                assertArrayEquals(new byte[pagemaps], s.getInputStream().readNBytes(pagemaps), "OPEN2s answered 0");
                s.getOutputStream().write(header(PageServerHeader.close()));
            }
            SessionEvent.Failed failed = assertInstanceOf(SessionEvent.Failed.class, log.awaitEnd());
            assertTrue(failed.reason().startsWith("cannot send the answer to CLOSE: cause=\""), failed.reason());
            assertTrue(failed.reason().endsWith("header=\"CLOSE nr_pages=0 vaddr=0x0 dst_id=0x0\" (the client reset"
                    + " the connection or stopped reading; nothing kept)"), failed.reason());
            assertEquals(List.of(), PageServerLoopbackTest.children(in), "the committed images were removed");
            // the server goes on
            assertArrayEquals(Vectors.bytes("pre-dump-1", "predump1.s2c"),
                    RawClient.exchange(server.boundPort(), Vectors.bytes("pre-dump-1", "predump1.c2s")));
            assertInstanceOf(SessionEvent.Completed.class, log.awaitEnds(2).get(1));
        }
    }

    /**
     * Sessions over the header cap and over the byte cap end with reasons naming the cap and the value, before
     * their pages are stored; a session in progress meanwhile finishes intact.
     */
    @ParameterizedTest
    @EnumSource(PageServer.Transport.class)
    void sessionsOverTheCapsEndWithTheCapNamedWhileAnotherFinishesIntact(PageServer.Transport transport)
            throws Exception {
        Path in = tmp.resolve("in");
        try (PageServer server = server(transport).maxPagesPerHeader(8)
                .maxBytesPerSession(DataSize.ofKibibytes(64)).start();
             EventLog log = new EventLog(server);
             Client good = new Client(server.boundPort())) {
            byte[] open = header(PageServerHeader.open2(TASK));
            sendRefusedSession(server.boundPort(), concat(open,
                    header(PageServerHeader.addF(TASK, 0x401000, 9, PageFlags.PE_PRESENT)), new byte[9 * PAGE]));
            SessionEvent.Failed pages = assertInstanceOf(SessionEvent.Failed.class, log.awaitEnd());
            assertEquals("nr_pages=9 exceeds max_pages_per_header=8 header=\"ADD_F[PE_PRESENT] nr_pages=9 vaddr=0x401000"
                    + " dst_id=0x538801\" (raise --max-header-pages if such runs are expected)", pages.reason());

            // OPEN2 and 4 runs of 4 pages with their headers: 65,696 bytes, 160 more than the cap
            ByteArrayOutputStream big = new ByteArrayOutputStream();
            big.writeBytes(open);
            for (int run = 0; run < 4; run++) {
                big.writeBytes(header(PageServerHeader.addF(TASK, 0x401000 + run * 4L * PAGE, 4, PageFlags.PE_PRESENT)));
                big.writeBytes(PAGES);
            }
            sendRefusedSession(server.boundPort(), big.toByteArray());
            SessionEvent.Failed bytes = assertInstanceOf(SessionEvent.Failed.class, log.awaitEnds(2).get(1));
            assertTrue(bytes.reason().contains("max_bytes_per_session=65536 received="), bytes.reason());
            assertTrue(bytes.reason().startsWith("session exceeds max_bytes_per_session=65536")
                    || bytes.reason().startsWith("run would exceed max_bytes_per_session=65536"), bytes.reason());

            good.finish();
            assertIntact(completedFrom(log, good.local));
            assertEquals(1, PageServerLoopbackTest.children(in).size(), "only the good session's directory");
        }
    }

    /** Without a cap given, 64 sessions are served at once. */
    /**
     * A client that asks PARENT over and over without reading the answers ends up with its session's thread
     * waiting for an answer to be written. Sessions must not share that thread: six others started after it
     * still finish (with the old 4-thread Netty worker pool, some landed on the stalled thread and hung until
     * the idle timeout, past the clients' 30 s read timeout).
     */
    @ParameterizedTest
    @EnumSource(PageServer.Transport.class)
    void aClientThatNeverReadsItsAnswersDoesNotStallOtherSessions(PageServer.Transport transport) throws Exception {
        byte[] parents = new byte[64 << 10];
        byte[] one = header(PageServerHeader.parent(TASK));
        for (int at = 0; at + one.length <= parents.length; at += one.length) {
            System.arraycopy(one, 0, parents, at, one.length);
        }
        AtomicLong sent = new AtomicLong();
        try (PageServer server = server(transport).idleTimeout(Duration.ofSeconds(60)).start();
             EventLog log = new EventLog(server);
             Socket staller = new Socket()) {
            // a small receive window: the unread answers fill it (and the server's send buffer) quickly
            staller.setReceiveBufferSize(4096);
            staller.connect(new InetSocketAddress("127.0.0.1", server.boundPort()));
            Thread writer = new Thread(() -> {
                try {
                    OutputStream out = staller.getOutputStream();
                    while (true) {
                        out.write(parents);
                        sent.addAndGet(parents.length);
                    }
                } catch (IOException closedAtTheEnd) {
                    // the test closes the socket
                }
            }, "parent-staller");
            writer.setDaemon(true);
            writer.start();
            // wait until the staller's writes no longer go through for 2 s: its session stopped reading,
            // waiting for an answer the client does not take
            long last = -1;
            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            while (sent.get() != last || last < (1 << 20)) {
                assertTrue(System.nanoTime() < deadline, "the staller's writes never stopped going through (or"
                        + " stopped below 1 MiB): sent=" + sent.get());
                last = sent.get();
                Thread.sleep(2000);
            }
            List<Client> others = new ArrayList<>();
            try {
                for (int i = 0; i < 6; i++) {
                    others.add(new Client(server.boundPort()));
                }
                for (Client c : others) {
                    c.finish();
                    assertIntact(completedFrom(log, c.local));
                }
            } finally {
                for (Client c : others) {
                    c.close();
                }
            }
            awaitPlaces(server, 1); // only the staller is left
        }
    }

    @ParameterizedTest
    @EnumSource(PageServer.Transport.class)
    void theDefaultCapIs64(PageServer.Transport transport) throws Exception {
        // page cache writes: 64 sessions need no O_DIRECT staging buffers
        try (PageServer server = server(transport).directIo(false).start(); EventLog log = new EventLog(server)) {
            Client[] clients = new Client[PageServer.DEFAULT_MAX_SESSIONS];
            try {
                for (int i = 0; i < clients.length; i++) {
                    clients[i] = new Client(server.boundPort());
                }
                try (Socket more = new Socket()) {
                    more.connect(new InetSocketAddress("127.0.0.1", server.boundPort()));
                    more.setSoTimeout(30_000);
                    assertClosedUnanswered(more);
                }
                assertEquals("max_sessions=64 reached: connections=64 (the connection was closed unread)",
                        awaitRefusals(log, 1).get(0).reason());
            } finally {
                for (Client c : clients) {
                    if (c != null) {
                        c.close();
                    }
                }
            }
        }
    }
}
