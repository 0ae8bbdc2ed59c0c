package io.pageflux.sink.pageserver;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.nativeio.Descriptors;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The plain-TCP server's splice path (page bytes of large runs go socket → pipe → pages file): the files
 * are byte for byte those of the copy path, however the client's writes split headers and pages; sessions
 * that break off inside a spliced run end as before; and no descriptor (pipe, socket duplicate, pages file)
 * outlives its session.
 */
class PageServerSpliceTest {

    private static final int PAGE = 4096;
    private static final PagemapId TASK = PagemapId.task(4242);
    private static final PagemapId SHMEM = PagemapId.shmem(77);

    @TempDir
    Path tmp;

    /** {@code pages} pages, each byte a function of the page's address and offset: no two pages alike. */
    private static byte[] pages(long vaddr, int pages) {
        byte[] b = new byte[pages * PAGE];
        for (int i = 0; i < b.length; i++) {
            long page = (vaddr / PAGE) + i / PAGE;
            b[i] = (byte) (page * 131 + i * 7 + (i >> 12));
        }
        return b;
    }

    private static void header(ByteArrayOutputStream out, PageServerHeader h) {
        out.writeBytes(h.toBytes().array());
    }

    /** Adds a present run and its bytes to {@code wire} and the bytes to {@code data}. */
    private static void present(ByteArrayOutputStream wire, ByteArrayOutputStream data, PagemapId pm, long vaddr,
                                int n) {
        header(wire, PageServerHeader.addF(pm, vaddr, n, PageFlags.PE_PRESENT));
        byte[] b = pages(vaddr, n);
        wire.writeBytes(b);
        data.writeBytes(b);
    }

    /**
     * A session with runs below, at and above the splice threshold, holes between them, and a second pagemap
     * (its own pages file); {@code taskData}/{@code shmemData} get the page bytes in order.
     */
    private static byte[] session(ByteArrayOutputStream taskData, ByteArrayOutputStream shmemData) {
        ByteArrayOutputStream w = new ByteArrayOutputStream();
        header(w, PageServerHeader.open2(TASK));
        present(w, taskData, TASK, 0x10000, 2);                       // small: copied
        present(w, taskData, TASK, 0x100000, 300);                    // 1.2 MiB: spliced
        header(w, PageServerHeader.addF(TASK, 0x300000, 5, PageFlags.PE_LAZY)); // no bytes
        present(w, taskData, TASK, 0x400000, 16);                     // exactly the threshold
        present(w, taskData, TASK, 0x410000, 17);                     // just above, contiguous: one entry
        present(w, taskData, TASK, 0x800000, 1);
        present(w, taskData, TASK, 0x900000, 1000);                   // larger than the pipe
        header(w, PageServerHeader.open2(SHMEM));
        present(w, shmemData, SHMEM, 0, 64);
        present(w, shmemData, SHMEM, 0x80000, 3);
        header(w, PageServerHeader.close());
        return w.toByteArray();
    }

    /** Sends {@code bytes} in pieces of {@code piece} bytes (pausing now and then), then reads the answers. */
    private static byte[] send(int port, byte[] bytes, int piece, boolean pause) throws Exception {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port), 5000);
            s.setSoTimeout(30_000);
            OutputStream out = s.getOutputStream();
            for (int off = 0, i = 0; off < bytes.length; off += piece, i++) {
                out.write(bytes, off, Math.min(piece, bytes.length - off));
                out.flush();
                if (pause && i % 16 == 0) {
                    Thread.sleep(1); // the server finds the socket empty mid-run and waits for it
                }
            }
            s.shutdownOutput();
            return RawClient.readAll(s.getInputStream());
        }
    }

    private PageServer start(String dir, boolean splice, Duration idle) {
        return PageServer.builder().directory(tmp.resolve(dir)).port(0).directIo(false).splice(splice)
                .transport(PageServer.Transport.THREADS).idleTimeout(idle).start();
    }

    private static Path completed(EventLog log) throws InterruptedException {
        SessionEvent end = log.awaitEnd();
        return assertInstanceOf(SessionEvent.Completed.class, end, end.toString()).directory().orElseThrow();
    }

    private static List<Path> files(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(dir::relativize).sorted().toList();
        }
    }

    private static final byte[] ANSWERS = {0, 0, 0, 0, 0, 0}; // OPEN2 twice (no parent), CLOSE 0

    @Test
    void splicedSessionsWriteTheSameFilesAsCopiedOnes() throws Exception {
        ByteArrayOutputStream taskData = new ByteArrayOutputStream();
        ByteArrayOutputStream shmemData = new ByteArrayOutputStream();
        byte[] wire = session(taskData, shmemData);
        // whole; pieces that split headers and pages anywhere; pieces with pauses (empty socket mid-run)
        int[][] ways = {{wire.length, 0}, {7777, 0}, {65_539, 1}, {1 << 20, 0}};
        for (int[] way : ways) {
            String name = "w" + way[0];
            Path copied;
            Path spliced;
            try (PageServer server = start("copy-" + name, false, Duration.ofSeconds(30)); EventLog log = new EventLog(server)) {
                assertArrayEquals(ANSWERS, send(server.boundPort(), wire, way[0], way[1] == 1));
                copied = completed(log);
                assertEquals(0, server.splicedBytes(), "splice(false) copies");
            }
            try (PageServer server = start("splice-" + name, true, Duration.ofSeconds(30)); EventLog log = new EventLog(server)) {
                assertArrayEquals(ANSWERS, send(server.boundPort(), wire, way[0], way[1] == 1));
                spliced = completed(log);
                long s = server.splicedBytes();
                // the runs of >= 16 pages (1397 pages) minus what came in the same reads as their headers
                assertTrue(s > 1000L * PAGE && s <= 1397L * PAGE, "piece=" + way[0] + " spliced_bytes=" + s);
            }
            List<Path> names = files(copied);
            assertEquals(names, files(spliced));
            for (Path f : names) {
                assertArrayEquals(Files.readAllBytes(copied.resolve(f)), Files.readAllBytes(spliced.resolve(f)),
                        "piece=" + way[0] + " file=" + f);
            }
            assertArrayEquals(taskData.toByteArray(), Files.readAllBytes(spliced.resolve("pages-65537.img")));
            assertArrayEquals(shmemData.toByteArray(), Files.readAllBytes(spliced.resolve("pages-65538.img")));
        }
    }

    private static long openDescriptors() throws IOException {
        try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
            return s.count();
        }
    }

    private static void awaitNoSessionThreads(PageServer server) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (server.sessionThreads() > 0 && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        assertEquals(0, server.sessionThreads(), "session threads left");
    }

    @Test
    void sessionsEndingInsideASplicedRunFailAsBeforeAndLeaveNoDescriptorOpen() throws Exception {
        ByteArrayOutputStream ignored = new ByteArrayOutputStream();
        byte[] wire = session(ignored, new ByteArrayOutputStream());
        ByteArrayOutputStream partial = new ByteArrayOutputStream();
        header(partial, PageServerHeader.open2(TASK));
        header(partial, PageServerHeader.addF(TASK, 0x100000, 256, PageFlags.PE_PRESENT));
        partial.writeBytes(pages(0x100000, 100)); // 100 of its 256 pages
        byte[] cut = partial.toByteArray();
        try (PageServer server = start("in", true, Duration.ofMillis(300)); EventLog log = new EventLog(server)) {
            send(server.boundPort(), wire, 1 << 16, false); // first use: classes, the JDK's own descriptors
            completed(log);
            awaitNoSessionThreads(server); // it closes its descriptors after publishing its end
            long before = openDescriptors();
            int rounds = 4;
            for (int i = 0; i < rounds; i++) {
                // complete
                assertArrayEquals(ANSWERS, send(server.boundPort(), wire, 1 << 16, false));
                // hangs up inside the spliced run; then one that stalls inside it (the idle timeout ends it)
                for (boolean hangUp : new boolean[] {true, false}) {
                    long spliced = server.splicedBytes();
                    try (Socket s = new Socket()) {
                        s.connect(new InetSocketAddress("127.0.0.1", server.boundPort()), 5000);
                        s.setSoTimeout(30_000);
                        // the header with a few pages, then the rest once the server waits in the run's splice
                        s.getOutputStream().write(cut, 0, 64 + 4 * PAGE);
                        s.getOutputStream().flush();
                        assertEquals(0, s.getInputStream().read()); // OPEN2's answer: no parent
                        Thread.sleep(50);
                        s.getOutputStream().write(cut, 64 + 4 * PAGE, cut.length - 64 - 4 * PAGE);
                        s.getOutputStream().flush();
                        if (hangUp) {
                            s.shutdownOutput();
                        }
                        assertEquals(-1, s.getInputStream().read(), "the server closes the session");
                    }
                    assertEquals(96L * PAGE, server.splicedBytes() - spliced, "hang_up=" + hangUp);
                }
            }
            List<SessionEvent> ends = log.awaitEnds(1 + 3 * rounds);
            List<String> failures = new ArrayList<>();
            for (SessionEvent e : ends.subList(1, ends.size())) {
                if (e instanceof SessionEvent.Failed f) {
                    failures.add(f.reason());
                }
            }
            assertEquals(2 * rounds, failures.size(), ends.toString());
            assertEquals(rounds, failures.stream().filter(r -> r.startsWith("client closed the connection with "
                    + "payload_missing=" + (156 * PAGE) + " bytes")).count(), failures.toString());
            assertEquals(rounds, failures.stream().filter(r -> r.startsWith("idle timeout: no data for "
                    + "idle_timeout_ms=300 received=" + (64 + 100 * PAGE))).count(), failures.toString());
            // only the complete sessions are visible
            try (Stream<Path> s = Files.list(tmp.resolve("in"))) {
                assertEquals(1 + rounds, s.filter(p -> !p.getFileName().toString().startsWith(".")).count());
            }
            awaitNoSessionThreads(server);
            assertEquals(before, openDescriptors(), "descriptors after " + (3 * rounds) + " sessions");
            assertTrue(server.splicedBytes() > 0);
        }
    }
    @Test
    void aFailedDescriptorLookupMakesOnlyThatSessionCopy() throws Exception {
        ByteArrayOutputStream taskData = new ByteArrayOutputStream();
        byte[] wire = session(taskData, new ByteArrayOutputStream());
        AtomicInteger lookups = new AtomicInteger();
        // the first lookup finds nothing, as for a client that reset the connection before it (ENOTCONN)
        PlainTcpTransport.socketLookup = (local, remote) -> lookups.incrementAndGet() == 1 ? -1
                : Descriptors.duplicateSocket(local, remote);
        try (PageServer server = start("in", true, Duration.ofSeconds(30)); EventLog log = new EventLog(server)) {
            assertArrayEquals(ANSWERS, send(server.boundPort(), wire, 1 << 16, false));
            Path first = completed(log);
            assertEquals(0, server.splicedBytes(), "the session whose lookup failed copies");
            assertEquals(1, lookups.get(), "looked up once, not at every run");
            assertArrayEquals(taskData.toByteArray(), Files.readAllBytes(first.resolve("pages-65537.img")));
            assertArrayEquals(ANSWERS, send(server.boundPort(), wire, 1 << 16, false));
            log.awaitEnds(2);
            assertTrue(server.splicedBytes() > 1000L * PAGE, "the next session splices: spliced_bytes="
                    + server.splicedBytes());
        } finally {
            PlainTcpTransport.socketLookup = Descriptors::duplicateSocket;
        }
    }
}
