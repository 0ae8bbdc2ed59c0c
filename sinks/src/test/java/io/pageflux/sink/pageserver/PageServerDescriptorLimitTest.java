package io.pageflux.sink.pageserver;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The thread transport out of file descriptors (EMFILE), for real: a server in a child JVM with
 * {@code ulimit -n 256} uses up its descriptors on command. Its accept thread is then blocked in
 * {@code accept(2)}, which has reserved the descriptor it returns, with the next session's selector
 * already open: the first client is accepted; then no selector can be opened, so the thread logs the reason
 * (once per 10 s) and retries every 100 ms while later clients wait in the listen backlog. Once descriptors
 * are free again, the waiting client and new ones are served; {@code stop()} ends the server promptly even
 * while it is starved.
 */
class PageServerDescriptorLimitTest {

    private static final PagemapId TASK = PagemapId.task(21384);
    private static final String ACCEPT_WARNING = "page server cannot accept a connection: port=";
    private static final Duration WAIT = Duration.ofSeconds(30);

    @TempDir
    Path tmp;

    /** Lines a child process printed on one of its streams, collected by a daemon thread. */
    private static List<String> collect(InputStream stream, String name) {
        List<String> lines = new CopyOnWriteArrayList<>();
        Thread t = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(stream, StandardCharsets.UTF_8))) {
                for (String line; (line = r.readLine()) != null; ) {
                    lines.add(line);
                }
            } catch (IOException ignored) {
                // the child is gone
            }
        }, "descriptor-test-" + name);
        t.setDaemon(true);
        t.start();
        return lines;
    }

    private static String await(List<String> lines, Predicate<String> wanted, Process child, List<String> err)
            throws InterruptedException {
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (System.nanoTime() < deadline) {
            for (String line : lines) {
                if (wanted.test(line)) {
                    return line;
                }
            }
            if (!child.isAlive()) {
                break;
            }
            Thread.sleep(10);
        }
        throw new AssertionError("the page server's output lacks the expected line; alive=" + child.isAlive()
                + " out=" + lines + " err=" + err);
    }

    private static void command(Writer to, String command) throws IOException {
        to.write(command + "\n");
        to.flush();
    }

    private static Socket connect(int port) throws IOException {
        Socket s = new Socket();
        s.connect(new InetSocketAddress("127.0.0.1", port), 5000);
        s.setSoTimeout((int) WAIT.toMillis());
        return s;
    }

    /** Opens a pagemap and sends part of a run: the server answers OPEN2 as soon as it serves the connection. */
    private static void startSession(Socket s) throws IOException {
        OutputStream out = s.getOutputStream();
        out.write(PageServerHeader.open2(TASK).toBytes().array());
        out.write(PageServerHeader.addF(TASK, 0x401000, 4, PageFlags.PE_PRESENT).toBytes().array());
        out.write(new byte[6000]);
        out.flush();
    }

    @Test
    void outOfDescriptorsTheServerWaitsLogsOnceServesAgainAndStops() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> cmd = new ArrayList<>(List.of("bash", "-c", "ulimit -n 256 && exec \"$@\"", "bash", java,
                "-Xmx64m", "-XX:-UseContainerSupport", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
                "-cp", System.getProperty("java.class.path"), DescriptorStarvedServer.class.getName(),
                tmp.resolve("in").toString()));
        Process child = new ProcessBuilder(cmd).start();
        List<Socket> clients = new ArrayList<>();
        try {
            List<String> out = collect(child.getInputStream(), "out");
            List<String> err = collect(child.getErrorStream(), "err");
            Writer commands = new OutputStreamWriter(child.getOutputStream(), StandardCharsets.UTF_8);
            int port = Integer.parseInt(await(out, l -> l.startsWith("port "), child, err).substring(5));
            byte[] session = Vectors.bytes("pre-dump-1", "predump1.c2s");
            byte[] answer = Vectors.bytes("pre-dump-1", "predump1.s2c");

            // warm-up: every class a session needs is loaded while the JVM can still open its class files
            assertArrayEquals(answer, RawClient.exchange(port, session));
            try (Socket broken = connect(port)) {
                startSession(broken);
                assertEquals(0, broken.getInputStream().read(), "OPEN2 answered");
            }
            await(out, l -> l.startsWith("event Failed[session=2"), child, err);

            command(commands, "fill");
            await(out, l -> l.startsWith("filled "), child, err);
            // accepted on the descriptor accept(2) had reserved, and kept open: it sends nothing
            Socket holding = connect(port);
            clients.add(holding);
            String holdingRemote = String.valueOf(holding.getLocalSocketAddress());
            await(out, l -> l.equals("event Started[session=3, remote=" + holdingRemote + "]"), child, err);
            // ... after which the accept thread cannot open the next session's selector
            String warning = await(err, l -> l.contains(ACCEPT_WARNING), child, err);
            long firstWarning = System.nanoTime();
            assertTrue(warning.contains("cause=java.io.IOException: Too many open files; retrying every 100 ms"
                    + " (raise the open-files limit, ulimit -n, if this is EMFILE)"), warning);
            Socket waiting = connect(port);
            clients.add(waiting);
            // PARENT and OPEN2 only: the kernel holds them for the server; the whole session might not fit
            waiting.getOutputStream().write(session, 0, 2 * PageServerWire.HEADER_BYTES);
            waiting.setSoTimeout(500);
            assertThrows(SocketTimeoutException.class, () -> waiting.getInputStream().read(),
                    () -> "not accepted while out of descriptors: no answer; out=" + out + " err=" + err);
            waiting.setSoTimeout((int) WAIT.toMillis());
            assertTrue(out.stream().noneMatch(l -> l.startsWith("event Started[session=4")), out.toString());
            assertTrue(child.isAlive());

            command(commands, "free");
            await(out, l -> l.startsWith("freed "), child, err);
            holding.close();
            await(out, l -> l.startsWith("event Failed[session=3,") && l.contains("client closed the connection"),
                    child, err);
            // the client that waited in the backlog is served now
            assertArrayEquals(new byte[5], waiting.getInputStream().readNBytes(5), "PARENT and OPEN2 answered 0");
            waiting.getOutputStream().write(session, 2 * PageServerWire.HEADER_BYTES,
                    session.length - 2 * PageServerWire.HEADER_BYTES);
            assertArrayEquals(new byte[4], waiting.getInputStream().readNBytes(4), "CLOSE answered 0");
            waiting.shutdownOutput();
            assertEquals(-1, waiting.getInputStream().read());
            await(out, l -> l.startsWith("event Completed[session=4,"), child, err);
            // and a new client
            assertArrayEquals(answer, RawClient.exchange(port, session));
            await(out, l -> l.startsWith("event Completed[session=5,"), child, err);

            // starved again, with one client served and one waiting: stop() must not hang on the retrying thread
            command(commands, "fill");
            long fills = 2;
            await(out, l -> out.stream().filter(o -> o.startsWith("filled ")).count() == fills, child, err);
            Socket served = connect(port);
            clients.add(served);
            await(out, l -> l.startsWith("event Started[session=6,"), child, err);
            Socket last = connect(port);
            clients.add(last);
            startSession(last);
            last.setSoTimeout(500);
            assertThrows(SocketTimeoutException.class, () -> last.getInputStream().read(),
                    () -> "not accepted while out of descriptors: no answer; out=" + out + " err=" + err);
            command(commands, "stop");
            assertTrue(child.waitFor(WAIT.toSeconds(), TimeUnit.SECONDS), "stop() returned and the JVM exited: "
                    + out + " " + err);
            assertEquals(0, child.exitValue(), String.valueOf(err));
            assertTrue(out.contains("stopped"), out.toString());
            assertTrue(out.stream().anyMatch(l -> l.startsWith("event Failed[session=6,")
                    && l.contains("reason=server stopped]")), out.toString());

            // logged once per 10 s while it lasted, not once per retry (every 100 ms)
            long warnings = err.stream().filter(l -> l.contains(ACCEPT_WARNING)).count();
            long allowed = 1 + TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - firstWarning) / 10;
            assertTrue(warnings >= 1 && warnings <= allowed, warnings + " warnings: " + err);
        } finally {
            for (Socket s : clients) {
                s.close();
            }
            child.destroyForcibly();
            child.waitFor(10, TimeUnit.SECONDS);
        }
    }
}
