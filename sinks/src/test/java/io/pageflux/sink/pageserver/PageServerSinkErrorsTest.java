package io.pageflux.sink.pageserver;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.TestChunks;
import io.pageflux.sink.criu.Vectors;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.PageChunk;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;

/** How {@link PageServerSink} fails: clearly, releasing every chunk, leaving nothing complete remotely. */
class PageServerSinkErrorsTest {

    @TempDir
    Path tmp;

    private final BufferPool pool = BufferPool.create(DataSize.ofKibibytes(256), DataSize.ofKibibytes(64));

    @AfterEach
    void poolIsEmpty() throws InterruptedException {
        TestChunks.await(() -> pool.leasedBuffers() == 0, "all buffers back in the pool: " + pool);
    }

    private static DumpContext context() throws IOException {
        return DumpContext.of(Vectors.PID, Vectors.maps(), 1);
    }

    private Flux<PageChunk> chunks() throws IOException {
        return TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool);
    }

    @Test
    void connectionRefusedNamesTheServerAndReadsNothing() throws Exception {
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort();
        }
        PageServerException e = assertThrows(PageServerException.class,
                () -> PageServerSinks.connect("127.0.0.1", port).write(context(), chunks()).block());
        assertTrue(e.getMessage().startsWith("cannot connect to page server: server=127.0.0.1:" + port
                + " command=connect cause="), e.getMessage());
        assertTrue(e.getMessage().contains("Connection refused"), e.getMessage());
        assertTrue(e.getMessage().contains("is `pageflux page-server`"), e.getMessage());
        assertEquals(0, pool.acquisitions(), "no chunk is read when the connection cannot be made");
    }

    @Test
    void serverDroppingTheSessionMidStreamIsAClearErrorAndLeavesNothing() throws Exception {
        Path in = tmp.resolve("in");
        try (PageServer server = PageServer.builder().directory(in).port(0)
                .maxBytesPerSession(DataSize.ofKibibytes(100)).start();
             EventLog log = new EventLog(server)) {
            PageServerException e = assertThrows(PageServerException.class, () -> PageServerSinks
                    .connect("127.0.0.1", server.boundPort()).write(context(), chunks()).block());
            assertTrue(e.getMessage().contains("server=127.0.0.1:" + server.boundPort()), e.getMessage());
            assertTrue(e.getMessage().startsWith("page server closed the connection")
                    || e.getMessage().startsWith("page server connection lost"), e.getMessage());
            SessionEvent.Failed failed = assertInstanceOf(SessionEvent.Failed.class, log.awaitEnd());
            assertTrue(failed.reason().contains("max_bytes_per_session=102400"), failed.reason());
            assertEquals(List.of(), PageServerLoopbackTest.children(in));
        }
    }

    @Test
    void cancellingTheDumpLeavesNothingOnTheServer() throws Exception {
        Path in = tmp.resolve("in");
        try (PageServer server = PageServer.builder().directory(in).port(0).start(); EventLog log = new EventLog(server)) {
            CompletableFuture<Void> firstChunk = new CompletableFuture<>();
            Disposable dump = PageServerSinks.connect("127.0.0.1", server.boundPort())
                    // the source never ends, so the cancel always lands mid-dump: the blocking client could
                    // otherwise send every chunk and CLOSE before dispose() runs
                    .write(context(), chunks().concatWith(Flux.never()).doOnNext(c -> firstChunk.complete(null)))
                    .subscribe();
            firstChunk.get();
            dump.dispose();
            SessionEvent.Failed failed = assertInstanceOf(SessionEvent.Failed.class, log.awaitEnd());
            assertTrue(failed.reason().startsWith("client closed the connection")
                    || failed.reason().startsWith("connection"), failed.reason());
            assertEquals(List.of(), PageServerLoopbackTest.children(in));
        }
    }

    @Test
    void wrongOpenAnswerIsRejected() throws Exception {
        try (FakeServer fake = new FakeServer(7, 0)) {
            PageServerException e = assertThrows(PageServerException.class,
                    () -> PageServerSinks.connect("127.0.0.1", fake.port()).write(context(), chunks()).block());
            assertEquals("page server gave a wrong reply: server=127.0.0.1:" + fake.port() + " command=OPEN2"
                    + " pagemap=pagemap-shmem-32.img reply=7 expected=0|1; it is not a CRIU page server or a broken one:"
                    + " check host and port", e.getMessage());
        }
    }

    @Test
    void nonZeroCloseAnswerIsAFailure() throws Exception {
        try (FakeServer fake = new FakeServer(0, 5)) {
            PageServerException e = assertThrows(PageServerException.class,
                    () -> PageServerSinks.connect("127.0.0.1", fake.port()).write(context(), chunks()).block());
            assertEquals("page server refused to complete the dump: server=127.0.0.1:" + fake.port()
                    + " command=CLOSE reply=5 expected=0; it could not store the images: check its log (disk space,"
                    + " permissions)", e.getMessage());
            assertTrue(fake.pagesReceived > 0, "the pages were sent before CLOSE");
        }
    }

    @Test
    void serverThatNeverAnswersTimesOut() throws Exception {
        try (ServerSocket silent = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            PageServerException e = assertThrows(PageServerException.class, () -> PageServerSinks
                    .connect("127.0.0.1", silent.getLocalPort()).replyTimeout(Duration.ofMillis(200))
                    .write(context(), chunks()).block());
            assertTrue(e.getMessage().startsWith("page server did not answer: server=127.0.0.1:"
                    + silent.getLocalPort() + " command=OPEN2 pagemap=pagemap-shmem-32.img timeout=PT0.2S"),
                    e.getMessage());
        }
    }

    @Test
    void addressesAreParsed() {
        assertEquals("tcp://127.0.0.1:27027", PageServerSinks.connect("tcp://127.0.0.1:27027").describe());
        assertEquals("tcp://[::1]:9", PageServerSinks.connect("tcp://[::1]:9").describe());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> PageServerSinks.connect("http://h:1"));
        assertEquals("not a page server address: 'http://h:1' (use tcp://HOST:PORT)", e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> PageServerSinks.connect("tcp://h"));
        assertThrows(IllegalArgumentException.class, () -> PageServerSinks.connect("h", 0));
    }

    /** Accepts one session, answers OPEN2 with {@code openAnswer} and CLOSE with {@code closeAnswer}. */
    static final class FakeServer implements AutoCloseable {
        private final ServerSocket socket;
        private final Thread thread;
        volatile long pagesReceived;

        FakeServer(int openAnswer, int closeAnswer) throws IOException {
            socket = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
            thread = new Thread(() -> serve(openAnswer, closeAnswer), "fake-page-server");
            thread.setDaemon(true);
            thread.start();
        }

        int port() {
            return socket.getLocalPort();
        }

        private void serve(int openAnswer, int closeAnswer) {
            try (Socket s = socket.accept()) {
                DataInputStream in = new DataInputStream(s.getInputStream());
                OutputStream out = s.getOutputStream();
                byte[] header = new byte[32];
                while (true) {
                    in.readFully(header);
                    PageServerHeader h = PageServerWire.decode(java.nio.ByteBuffer.wrap(header), 0);
                    if (h.op() == PageServerWire.OP_OPEN2) {
                        out.write(openAnswer);
                    } else if (h.cmd() == PageServerWire.CMD_CLOSE) {
                        out.write(new byte[] {(byte) closeAnswer, 0, 0, 0});
                        in.read();
                        return;
                    } else {
                        long n = h.payloadBytes(4096);
                        in.skipNBytes(n);
                        pagesReceived += n / 4096;
                    }
                    out.flush();
                }
            } catch (IOException ignored) {
                // the client hung up: that is what the tests provoke
            }
        }

        @Override
        public void close() throws Exception {
            socket.close();
            thread.join(5000);
        }
    }
}
