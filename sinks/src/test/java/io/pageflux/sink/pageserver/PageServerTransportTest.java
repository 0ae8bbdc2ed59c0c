package io.pageflux.sink.pageserver;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import java.io.InputStream;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What the thread-per-session transport (the default for plain TCP) adds to what every page-server
 * test checks: its threads end with the server, a session's read buffer is freed when it ends, stop
 * and idle timeouts end live sessions with their reasons; and the Netty transport still serves plain
 * TCP when chosen.
 */
class PageServerTransportTest {

    private static final PagemapId TASK = PagemapId.task(21384);

    @TempDir
    Path tmp;

    /** Live threads of the plain-TCP transport, by name. */
    private static List<String> transportThreads() {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(Thread::isAlive)
                .map(Thread::getName)
                .filter(n -> n.equals("pageflux-page-server-accept") || n.startsWith("pageflux-page-session-"))
                .sorted()
                .toList();
    }

    /** Connects, opens a pagemap and sends part of a run's pages, then keeps the connection open. */
    private static Socket halfwayClient(int port) throws Exception {
        Socket s = new Socket();
        s.connect(new InetSocketAddress("127.0.0.1", port));
        s.setSoTimeout(30_000);
        s.getOutputStream().write(PageServerHeader.open2(TASK).toBytes().array());
        s.getOutputStream().write(PageServerHeader.addF(TASK, 0x401000, 4, PageFlags.PE_PRESENT).toBytes().array());
        s.getOutputStream().write(new byte[6000]);
        assertEquals(0, s.getInputStream().read(), "OPEN2 answered: no parent");
        return s;
    }

    @Test
    void stopFailsLiveSessionsWithServerStoppedAndEndsEveryThread() throws Exception {
        assertEquals(List.of(), transportThreads(), "no transport thread left by an earlier test");
        Path in = tmp.resolve("in");
        PageServer server = PageServer.builder().directory(in).port(0).start();
        try (EventLog log = new EventLog(server);
             Socket first = halfwayClient(server.boundPort());
             Socket second = halfwayClient(server.boundPort())) {
            assertEquals(2, server.activeSessions());
            assertEquals(List.of("pageflux-page-server-accept", "pageflux-page-session-1", "pageflux-page-session-2"),
                    transportThreads());

            server.stop();

            assertEquals(List.of(), transportThreads(), "stop() returns after the accept and session threads ended");
            assertEquals(0, server.activeSessions());
            assertEquals(0, server.admittedConnections(), "stopped sessions gave their max_sessions places back");
            List<SessionEvent> ends = log.awaitEnds(2);
            for (SessionEvent end : ends) {
                assertEquals("server stopped", assertInstanceOf(SessionEvent.Failed.class, end).reason());
            }
            assertEquals(List.of(), PageServerLoopbackTest.children(in), "nothing left that looks complete");
            assertEquals(-1, first.getInputStream().read(), "the server closed the connection");
            // the directory is free again: a new server takes its lock
            PageServer.builder().directory(in).port(0).start().stop();
        } finally {
            server.stop();
        }
    }

    @Test
    void idleTimeoutEndsAStalledSessionAndCloseThenSilenceCompletesOne() throws Exception {
        Path in = tmp.resolve("in");
        try (PageServer server = PageServer.builder().directory(in).port(0).idleTimeout(Duration.ofMillis(300)).start();
             EventLog log = new EventLog(server)) {
            try (Socket stalled = halfwayClient(server.boundPort())) {
                assertEquals(-1, stalled.getInputStream().read(), "the server hung up on the stalled client");
            }
            SessionEvent.Failed failed = assertInstanceOf(SessionEvent.Failed.class, log.awaitEnd());
            assertEquals("idle timeout: no data for idle_timeout_ms=300 received=6064 (a stalled client; nothing kept)",
                    failed.reason());
            assertEquals(List.of(), PageServerLoopbackTest.children(in));

            // a client that gets its CLOSE answer but neither closes nor half-closes: complete at the timeout
            try (Socket lingering = new Socket()) {
                lingering.connect(new InetSocketAddress("127.0.0.1", server.boundPort()));
                lingering.setSoTimeout(30_000);
                lingering.getOutputStream().write(Vectors.bytes("pre-dump-1", "predump1.c2s"));
                InputStream answers = lingering.getInputStream();
                assertArrayEquals(Vectors.bytes("pre-dump-1", "predump1.s2c"), answers.readNBytes(9));
                assertEquals(-1, answers.read(), "closed at the idle timeout");
            }
            SessionEvent.Completed done = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnds(2).get(1));
            assertArrayEquals(Vectors.bytes("pre-dump-1", "pages-65537.img"),
                    Files.readAllBytes(done.directory().orElseThrow().resolve("pages-65537.img")));
        }
    }

    @Test
    void aSessionsReadBufferIsFreedWhenItEnds() throws Exception {
        BufferPoolMXBean direct = ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class).stream()
                .filter(b -> b.getName().equals("direct")).findFirst().orElseThrow();
        byte[] session = Vectors.bytes("pre-dump-1", "predump1.c2s");
        byte[] answer = Vectors.bytes("pre-dump-1", "predump1.s2c");
        int sessions = 24;
        // page cache writes: O_DIRECT staging buffers are the writer's, not the transport's
        try (PageServer server = PageServer.builder().directory(tmp.resolve("in")).port(0).directIo(false).start();
             EventLog log = new EventLog(server)) {
            assertArrayEquals(answer, RawClient.exchange(server.boundPort(), session)); // first-use allocations
            log.awaitEnds(1);
            long before = direct.getMemoryUsed();
            for (int i = 0; i < sessions; i++) {
                assertArrayEquals(answer, RawClient.exchange(server.boundPort(), session));
            }
            List<SessionEvent> ends = log.awaitEnds(1 + sessions);
            assertTrue(ends.stream().allMatch(SessionEvent.Completed.class::isInstance), ends.toString());
            long grown = direct.getMemoryUsed() - before;
            // each session read through its own 1 MiB buffer: not freed, that would be 24 MiB until some GC
            assertTrue(grown < 4L << 20, "direct memory grew by " + grown + " bytes over " + sessions + " sessions");
            long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
            while (server.sessionThreads() > 0 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertEquals(0, server.sessionThreads(), "every session thread ended");
        }
    }

    @Test
    void nettyTransportServesPlainTcpWhenChosen() throws Exception {
        Path in = tmp.resolve("in");
        try (PageServer server = PageServer.builder().directory(in).port(0).transport(PageServer.Transport.NETTY).start();
             EventLog log = new EventLog(server)) {
            assertEquals(List.of(), transportThreads(), "no thread-per-session transport");
            assertArrayEquals(Vectors.bytes("pre-dump-1", "predump1.s2c"),
                    RawClient.exchange(server.boundPort(), Vectors.bytes("pre-dump-1", "predump1.c2s")));
            SessionEvent.Completed done = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnd());
            assertArrayEquals(Vectors.bytes("pre-dump-1", "pages-65537.img"),
                    Files.readAllBytes(done.directory().orElseThrow().resolve("pages-65537.img")));
        }
    }
}
