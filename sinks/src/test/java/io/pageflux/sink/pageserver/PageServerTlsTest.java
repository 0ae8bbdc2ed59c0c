package io.pageflux.sink.pageserver;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.netty.handler.ssl.SslContext;
import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.TestChunks;
import io.pageflux.sink.criu.Vectors;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** TLS on the JDK stack with a throw-away CA made by the README's openssl lines (make-certs.sh). */
class PageServerTlsTest {

    private static final char[] PASSWORD = "changeit".toCharArray();

    @TempDir
    static Path certs;

    @TempDir
    Path tmp;

    private final BufferPool pool = BufferPool.create(DataSize.ofKibibytes(256), DataSize.ofKibibytes(64));

    @BeforeAll
    static void makeCertificates() throws Exception {
        Assumptions.assumeTrue(Files.isExecutable(Path.of("/usr/bin/openssl")), "openssl is not installed");
        try (InputStream script = PageServerTlsTest.class.getResourceAsStream("/pageserver/make-certs.sh")) {
            Files.copy(script, certs.resolve("make-certs.sh"));
        }
        run("bash", "make-certs.sh");
        // a server certificate that names another host
        Files.writeString(certs.resolve("wrong.ext"), "subjectAltName=DNS:elsewhere.invalid\n");
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "wrong.key",
                "-out", "wrong.csr", "-subj", "/CN=elsewhere");
        run("openssl", "x509", "-req", "-in", "wrong.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "30", "-extfile", "wrong.ext", "-out", "wrong.pem");
    }

    private static void run(String... command) throws Exception {
        Process p = new ProcessBuilder(command).directory(certs.toFile()).redirectErrorStream(true).start();
        try {
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(p.waitFor(30, TimeUnit.SECONDS), String.join(" ", command) + " timed out");
            assertEquals(0, p.exitValue(), String.join(" ", command) + ": " + out);
        } finally {
            p.destroyForcibly();
        }
    }

    @AfterEach
    void poolIsEmpty() throws InterruptedException {
        TestChunks.await(() -> pool.leasedBuffers() == 0, "all buffers back in the pool: " + pool);
    }

    private static Path cert(String name) {
        return certs.resolve(name);
    }

    private static SslContext mutualServer() {
        return PageServerTls.serverFromPem(cert("server.pem"), cert("server.key"), cert("ca.pem"));
    }

    private static SslContext goodClient() {
        return PageServerTls.clientFromPem(cert("ca.pem"), cert("client.pem"), cert("client.key"));
    }

    private static DumpContext context() throws Exception {
        return DumpContext.of(Vectors.PID, Vectors.maps(), 1);
    }

    private void dumpAndCompare(PageServer server, EventLog log, SslContext client) throws Exception {
        var runs = Vectors.runs(Vectors.dir("full-dump"), 0);
        Path local = tmp.resolve("local-" + System.nanoTime());
        PageSinks.criuImages(local).write(context(), TestChunks.stream(runs, pool)).block();
        int before = log.ends().size();
        PageServerSink sink = PageServerSinks.connect("127.0.0.1", server.boundPort()).secure(client);
        assertEquals("tls://127.0.0.1:" + server.boundPort(), sink.describe());
        sink.write(context(), TestChunks.stream(runs, pool)).block();
        SessionEvent.Completed done = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnds(before + 1).get(before));
        ImageCompare.assertSameExceptPagesIds(local, done.directory().orElseThrow());
    }

    @Test
    void mutualTlsDumpEqualsTheLocalDump() throws Exception {
        try (PageServer server = PageServer.builder().directory(tmp.resolve("in")).port(0).tls(mutualServer()).start();
             EventLog log = new EventLog(server)) {
            dumpAndCompare(server, log, goodClient());
        }
    }

    private static void awaitPlaces(PageServer server, int n) throws InterruptedException {
        TestChunks.await(() -> server.admittedConnections() == n, "connections holding a place: " + n);
    }

    /**
     * A connection holds its place from its accept, before its handshake; one beyond max_sessions is closed
     * before any handshake, and the place comes back when the first client hangs up.
     */
    @Test
    void aConnectionBeyondMaxSessionsIsRefusedBeforeItsHandshake() throws Exception {
        try (PageServer server = PageServer.builder().directory(tmp.resolve("in")).port(0).tls(mutualServer())
                .maxSessions(1).start();
             EventLog log = new EventLog(server)) {
            try (Socket silent = new Socket()) {
                silent.connect(new InetSocketAddress("127.0.0.1", server.boundPort())); // never says ClientHello
                awaitPlaces(server, 1);
                PageServerException e = assertThrows(PageServerException.class, () -> PageServerSinks
                        .connect("127.0.0.1", server.boundPort()).secure(goodClient())
                        .write(context(), TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool)).block());
                assertTrue(e.getMessage().contains("server=127.0.0.1:" + server.boundPort()), e.getMessage());
                TestChunks.await(() -> log.events.stream().anyMatch(SessionEvent.Refused.class::isInstance),
                        "a refusal published");
                SessionEvent.Refused refused = log.events.stream().filter(SessionEvent.Refused.class::isInstance)
                        .map(SessionEvent.Refused.class::cast).findFirst().orElseThrow();
                assertEquals("max_sessions=1 reached: connections=1 (the connection was closed unread)",
                        refused.reason());
                assertEquals(List.of(), log.events.stream().filter(SessionEvent.Started.class::isInstance).toList(),
                        "neither connection became a session");
            }
            awaitPlaces(server, 0);
            dumpAndCompare(server, log, goodClient());
        }
    }

    @Test
    void tlsIsServedByNettyNotByThreads() {
        PageServer.Builder threads = PageServer.builder().directory(tmp.resolve("in")).port(0).tls(mutualServer())
                .transport(PageServer.Transport.THREADS);
        IllegalStateException e = assertThrows(IllegalStateException.class, threads::start);
        assertEquals("transport=THREADS serves plain TCP only: TLS is served by transport=NETTY (leave the"
                + " transport unset)", e.getMessage());
        assertTrue(Thread.getAllStackTraces().keySet().stream()
                .noneMatch(t -> t.getName().equals("pageflux-page-server-accept")), "no plain-TCP listener started");
    }

    @Test
    void clientWithoutCertificateIsRejectedAndTheServerGoesOn() throws Exception {
        Path in = tmp.resolve("in");
        try (PageServer server = PageServer.builder().directory(in).port(0).tls(mutualServer()).start();
             EventLog log = new EventLog(server)) {
            SslContext anonymous = PageServerTls.clientFromPem(cert("ca.pem"), null, null);
            PageServerException e = assertThrows(PageServerException.class, () -> PageServerSinks
                    .connect("127.0.0.1", server.boundPort()).secure(anonymous)
                    .write(context(), TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool)).block());
            assertTrue(e.getMessage().contains("server=127.0.0.1:" + server.boundPort()), e.getMessage());
            assertTrue(e.getMessage().contains("SSLHandshakeException"), e.getMessage());
            assertEquals(List.of(), log.ends().stream().filter(SessionEvent.Completed.class::isInstance).toList());
            assertEquals(List.of(), PageServerLoopbackTest.children(in));
            dumpAndCompare(server, log, goodClient());
        }
    }

    @Test
    void serverCertificateMustNameTheHost() throws Exception {
        SslContext wrongName = PageServerTls.serverFromPem(cert("wrong.pem"), cert("wrong.key"), cert("ca.pem"));
        try (PageServer server = PageServer.builder().directory(tmp.resolve("in")).port(0).tls(wrongName).start()) {
            PageServerException e = assertThrows(PageServerException.class, () -> PageServerSinks
                    .connect("127.0.0.1", server.boundPort()).secure(goodClient())
                    .write(context(), TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool)).block());
            assertTrue(e.getMessage().startsWith("cannot connect to page server: server=127.0.0.1:" + server.boundPort()
                    + " command=connect tls=on cause="), e.getMessage());
            assertTrue(e.getMessage().contains("No subject alternative names matching IP address 127.0.0.1"),
                    e.getMessage());
            assertEquals(0, pool.acquisitions(), "nothing read before the handshake");
        }
    }

    @Test
    void plainClientGetsNoSessionOnATlsServer() throws Exception {
        Path in = tmp.resolve("in");
        try (PageServer server = PageServer.builder().directory(in).port(0).tls(mutualServer()).start()) {
            assertThrows(PageServerException.class, () -> PageServerSinks.connect("127.0.0.1", server.boundPort())
                    .write(context(), TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool)).block());
            assertEquals(List.of(), PageServerLoopbackTest.children(in));
        }
    }

    @Test
    void pkcs12KeyStoresWorkToo() throws Exception {
        for (String who : List.of("server", "client")) {
            run("openssl", "pkcs12", "-export", "-in", who + ".pem", "-inkey", who + ".key", "-certfile", "ca.pem",
                    "-name", who, "-out", who + ".p12", "-passout", "pass:changeit");
        }
        KeyStore trust = KeyStore.getInstance("PKCS12"); // what `keytool -importcert -alias ca` makes
        trust.load(null, PASSWORD);
        try (InputStream ca = Files.newInputStream(cert("ca.pem"))) {
            trust.setCertificateEntry("ca", CertificateFactory.getInstance("X.509").generateCertificate(ca));
        }
        try (OutputStream out = Files.newOutputStream(cert("trust.p12"))) {
            trust.store(out, PASSWORD);
        }
        SslContext server = PageServerTls.serverFromKeyStore(cert("server.p12"), PASSWORD, cert("trust.p12"));
        SslContext client = PageServerTls.clientFromKeyStore(cert("trust.p12"), PASSWORD, cert("client.p12"));
        try (PageServer s = PageServer.builder().directory(tmp.resolve("in")).port(0).tls(server).start();
             EventLog log = new EventLog(s)) {
            dumpAndCompare(s, log, client);
        }
    }

    @Test
    void unreadableKeyIsAClearError() {
        PageServerException e = assertThrows(PageServerException.class,
                () -> PageServerTls.serverFromPem(cert("server.pem"), cert("ca.pem"), null));
        assertTrue(e.getMessage().startsWith("cannot set up TLS for the page server: cert=" + cert("server.pem")
                + " key=" + cert("ca.pem")), e.getMessage());
    }
}
