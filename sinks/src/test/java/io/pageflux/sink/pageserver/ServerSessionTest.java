package io.pageflux.sink.pageserver;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * One session without a network, fed the captured CRIU pre-dump in a single read (what a fast client and a
 * 1 MiB socket read give): the byte cap counts exactly what was sent, and answers that cannot be sent
 * (injected through the session's output) end it with the command named and nothing kept.
 */
class ServerSessionTest {

    private static final byte[] SESSION = Vectors.bytes("pre-dump-1", "predump1.c2s");

    @TempDir
    Path tmp;

    private SessionDirectories directories;
    private final List<SessionEvent> events = new ArrayList<>();

    @AfterEach
    void unlock() {
        if (directories != null) {
            directories.close();
        }
    }

    private ServerSession session(long maxBytes, Duration idle, ServerSession.Output output) {
        return session(maxBytes, idle, output, false);
    }

    private ServerSession session(long maxBytes, Duration idle, ServerSession.Output output, boolean directIo) {
        ServerConfig config = new ServerConfig(tmp, Optional.empty(), Optional.empty(), 1L << 18, maxBytes, idle,
                ServerConfig.DEFAULT_TEMPLATE, 4096, false, directIo, 64, true);
        directories = SessionDirectories.open(config);
        return new ServerSession(1, "/192.0.2.1:4000", Instant.EPOCH, config, directories, output, events::add);
    }

    /** Answers every reply at once, as a connection whose client reads. */
    private static Future<?> written(ByteBuffer reply) {
        return CompletableFuture.completedFuture(null);
    }

    /** What is in the server directory apart from its lock file. */
    private List<Path> left() throws IOException {
        return PageServerLoopbackTest.children(tmp);
    }

    @Test
    void aSessionOfExactlyTheByteCapCompletes() throws Exception {
        ServerSession s = session(SESSION.length, Duration.ofSeconds(5), ServerSessionTest::written);
        s.onData(ByteBuffer.wrap(SESSION));
        s.onEof();
        SessionEvent.Completed done = assertInstanceOf(SessionEvent.Completed.class, events.get(events.size() - 1));
        assertEquals(SESSION.length, done.bytesReceived());
        assertArrayEquals(Vectors.bytes("pre-dump-1", "pages-65537.img"),
                Files.readAllBytes(done.directory().orElseThrow().resolve("pages-65537.img")));
    }

    @Test
    void oneByteOverTheByteCapFailsNamingTheCapAndTheCount() throws Exception {
        ServerSession s = session(SESSION.length - 1, Duration.ofSeconds(5), ServerSessionTest::written);
        ServerSession.SessionFailure e = assertThrows(ServerSession.SessionFailure.class,
                () -> s.onData(ByteBuffer.wrap(SESSION)));
        assertEquals("session exceeds max_bytes_per_session=" + (SESSION.length - 1) + " received=" + SESSION.length
                + " (raise --max-session-bytes if such dumps are expected)", e.getMessage());
        s.fail(e.getMessage());
        assertEquals(List.of(), left());
    }

    @Test
    void aRunAnnouncingMoreThanTheByteCapLeftFailsAtItsHeader() throws Exception {
        // the last run's header: the cap is its end plus all but one byte of its pages
        ByteBuffer wire = ByteBuffer.wrap(SESSION);
        int at = 0;
        int lastRun = -1;
        long lastPayload = 0;
        while (at < SESSION.length) {
            PageServerHeader h = PageServerWire.decode(wire, at);
            long payload = h.payloadBytes(4096);
            if (payload > 0) {
                lastRun = at;
                lastPayload = payload;
            }
            at += PageServerWire.HEADER_BYTES + (int) payload;
        }
        int headerEnd = lastRun + PageServerWire.HEADER_BYTES;
        long cap = headerEnd + lastPayload - 1;
        ServerSession s = session(cap, Duration.ofSeconds(5), ServerSessionTest::written);
        ServerSession.SessionFailure e = assertThrows(ServerSession.SessionFailure.class,
                () -> s.onData(ByteBuffer.wrap(SESSION, 0, headerEnd)));
        assertEquals("run would exceed max_bytes_per_session=" + cap + " received=" + headerEnd + " announced="
                + lastPayload + " header=\"" + PageServerWire.decode(wire, lastRun) + "\" (raise --max-session-bytes if"
                + " such dumps are expected)", e.getMessage());
    }

    @Test
    void aHalfReceivedPageShortensTheNextReadOnlyWhenItsRunCanBeSpliced() throws Exception {
        // the first present run of at least two pages; feed its header and 100 bytes of its first page
        ByteBuffer wire = ByteBuffer.wrap(SESSION);
        int at = 0;
        int run = -1;
        long runPayload = 0;
        while (at < SESSION.length && run < 0) {
            PageServerHeader h = PageServerWire.decode(wire, at);
            long payload = h.payloadBytes(4096);
            if (payload >= 2 * 4096) {
                run = at;
                runPayload = payload;
            }
            at += PageServerWire.HEADER_BYTES + (int) payload;
        }
        assertTrue(run >= 0, "the captured pre-dump has a run of two pages or more");
        int fed = run + PageServerWire.HEADER_BYTES + 100;
        long min = runPayload - 4096; // exactly what follows the half-received page

        ServerSession cached = session(Long.MAX_VALUE, Duration.ofSeconds(5), ServerSessionTest::written, false);
        cached.onData(ByteBuffer.wrap(SESSION, 0, fed));
        assertEquals(4096 - 100, cached.pageRemainder(min), "page cache: finish the page, splice the rest");
        assertEquals(0, cached.pageRemainder(min + 1), "too little follows to splice");
        assertEquals(0, cached.spliceable(1), "a half-received page is copied first");
        cached.fail("test over");
        directories.close();

        ServerSession direct = session(Long.MAX_VALUE, Duration.ofSeconds(5), ServerSessionTest::written, true);
        direct.onData(ByteBuffer.wrap(SESSION, 0, fed));
        assertEquals(0, direct.pageRemainder(min), "O_DIRECT pages file: never spliced, so reads stay full size");
        assertEquals(0, direct.spliceable(1));
        direct.fail("test over");
    }

    /** An output whose {@code n}th reply fails the way a reset connection's write does. */
    private static ServerSession.Output failingReply(int n) {
        int[] replies = {0};
        return reply -> ++replies[0] == n
                ? CompletableFuture.failedFuture(new IOException("Connection reset by peer"))
                : CompletableFuture.completedFuture(null);
    }

    @Test
    void aCloseAnswerThatCannotBeWrittenDiscardsTheCommittedSession() throws Exception {
        // the capture asks PARENT, OPEN2, then CLOSE: the third reply is CLOSE's
        ServerSession s = session(1L << 30, Duration.ofSeconds(5), failingReply(3));
        ServerSession.SessionFailure e = assertThrows(ServerSession.SessionFailure.class,
                () -> s.onData(ByteBuffer.wrap(SESSION)));
        assertEquals("cannot send the answer to CLOSE: cause=\"java.io.IOException: Connection reset by peer\""
                + " header=\"CLOSE nr_pages=0 vaddr=0x0 dst_id=0x0\" (the client reset the connection or stopped"
                + " reading; nothing kept)", e.getMessage());
        assertEquals(List.of(), left(), "the committed images were removed");
        s.onEof(); // whatever the transport does next, the session does not complete
        s.onIdle(5000);
        assertEquals(new SessionEvent.Failed(1, "/192.0.2.1:4000", e.getMessage()), events.get(events.size() - 1));
        assertTrue(events.stream().noneMatch(SessionEvent.Completed.class::isInstance), events.toString());
    }

    @Test
    void aParentAnswerThatCannotBeWrittenEndsTheSessionAtOnce() throws Exception {
        ServerSession s = session(1L << 30, Duration.ofSeconds(5), failingReply(1));
        ServerSession.SessionFailure e = assertThrows(ServerSession.SessionFailure.class,
                () -> s.onData(ByteBuffer.wrap(SESSION)));
        assertEquals("cannot send the answer to PARENT: cause=\"java.io.IOException: Connection reset by peer\""
                + " header=\"PARENT nr_pages=0 vaddr=0x0 dst_id=0x538801\" (the client reset the connection or"
                + " stopped reading; nothing kept)", e.getMessage());
    }

    @Test
    void anAnswerTheClientDoesNotTakeWithinTheIdleTimeoutEndsTheSession() throws Exception {
        ServerSession s = session(1L << 30, Duration.ofMillis(50), reply -> new CompletableFuture<Void>());
        ServerSession.SessionFailure e = assertThrows(ServerSession.SessionFailure.class,
                () -> s.onData(ByteBuffer.wrap(SESSION)));
        assertEquals("cannot send the answer to PARENT: not read by the client within idle_timeout_ms=50"
                + " header=\"PARENT nr_pages=0 vaddr=0x0 dst_id=0x538801\" (nothing kept)", e.getMessage());
    }
}
