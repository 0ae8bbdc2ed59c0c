package io.pageflux.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.ImageDirectoryWriter;
import io.pageflux.sink.pageserver.PageServer;
import io.pageflux.sink.pageserver.SessionEvent;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import io.pageflux.source.sample.SampleProcess;
import java.net.ConnectException;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code page-server --chain} with {@code migrate --to tcp://} and with a chain of separate {@code pre-dump --to
 * tcp://} commands, and the leftovers report, from the command line.
 */
class PageServerCliTest {

    @TempDir
    Path tmp;

    @Test
    void migrateOverTcpIntoAChainingServerThatFirstPublishesALeftover() throws Exception {
        Path received = Files.createDirectories(tmp.resolve("received"));
        // a session a crashed server committed but did not publish
        try (ImageDirectoryWriter w = ImageDirectoryWriter.create(received.resolve(".incoming-3"),
                ImageDirectoryWriter.Options.defaults().withFirstPagesId(ImageDirectoryWriter.Options.PAGE_SERVER_FIRST_PAGES_ID))) {
            w.openPagemap(PagemapId.task(4242)).add(0x10000, 1, PageFlags.PE_PRESENT, ByteBuffer.allocate(4096));
            w.commit();
        }
        int port;
        try (ServerSocket probe = new ServerSocket(0)) {
            port = probe.getLocalPort();
        }
        String portText = Integer.toString(port);
        CompletableFuture<Cli.Result> server = CompletableFuture.supplyAsync(() -> Cli.run("page-server", "--dir",
                received.toString(), "--port", portText, "--sessions", "2", "--chain"));
        try (SampleProcess target = SampleProcess.start(4, true)) {
            String pid = Integer.toString(target.pid());
            Cli.Result migrated = null;
            for (int attempt = 0; attempt < 100; attempt++) {
                migrated = Cli.run("migrate", "--pid", pid, "--to", "tcp://127.0.0.1:" + port, "--max-pre-dumps", "1");
                if (migrated.exit() == 0 || server.isDone()) {
                    break;
                }
                Thread.sleep(100); // the server thread may not listen yet
            }
            assertEquals(0, migrated.exit(), migrated.toString());
            assertTrue(migrated.out().contains("pre-dump 1: pages sent "), migrated.out());
            assertTrue(migrated.out().contains("final dump 2: pages sent "), migrated.out());

            Cli.Result s = server.get(60, TimeUnit.SECONDS);
            assertEquals(0, s.exit(), s.toString());
            assertTrue(s.out().startsWith("leftover .incoming-3 published as 4242-"), s.out());
            assertTrue(s.out().contains("(chained per pid)"), s.out());
            List<Path> sessions;
            try (Stream<Path> list = Files.list(received)) {
                sessions = list.filter(d -> d.getFileName().toString().startsWith(pid + "-")).sorted().toList();
            }
            assertEquals(2, sessions.size(), sessions.toString());
            assertTrue(s.out().contains("session 2 builds on " + sessions.get(0)), s.out());
            ImageDirectory last = ImageDirectory.open(sessions.get(1)).verify();
            assertEquals(Path.of("..", sessions.get(0).getFileName().toString()), last.parentLink().orElseThrow());
            assertTrue(last.parentPages() > 0, "the final dump's unchanged pages are holes into the pre-dump");
        } finally {
            server.cancel(true);
        }
    }

    /**
     * Separate pre-dump commands to a chaining server with one rolling --state directory: the first keeps its
     * digests there, the second uses them as its parent, so only the rewritten pages travel and the server
     * links the second session to the first; the chain then equals the target, byte for byte. A state left
     * pending by a pre-dump that did not finish makes the next one write every page.
     */
    @Test
    void separatePreDumpsOverTcpChainThroughARollingStateDirectory() throws Exception {
        Path received = Files.createDirectory(tmp.resolve("received"));
        Path state = tmp.resolve("state");
        try (SampleProcess target = SampleProcess.start(4, false);
             PageServer server = PageServer.builder().directory(received).port(0).chain(true).start()) {
            List<SessionEvent.Completed> sessions = new CopyOnWriteArrayList<>();
            server.events().ofType(SessionEvent.Completed.class).subscribe(sessions::add);
            String pid = Integer.toString(target.pid());
            String uri = "tcp://127.0.0.1:" + server.boundPort();

            Cli.Result first = Cli.run("pre-dump", "--pid", pid, "--to", uri, "--state", state.toString());
            assertEquals(0, first.exit(), first.toString());
            try (Stream<Path> files = Files.list(state)) {
                assertEquals(List.of("pageflux-digests.bin"), files.map(f -> f.getFileName().toString()).toList(),
                        "only the digests stay local (the images went to the server), and no pending mark");
            }
            long rewritten = target.rewrite();

            Cli.Result second = Cli.run("pre-dump", "--pid", pid, "--to", uri, "--state", state.toString());
            assertEquals(0, second.exit(), second.toString());
            awaitSessions(sessions, 2);
            Path dir1 = sessions.get(0).directory().orElseThrow();
            Path dir2 = sessions.get(1).directory().orElseThrow();
            ImageDirectory images = ImageDirectory.open(dir2).verify();
            assertEquals(Path.of("..", dir1.getFileName().toString()), images.parentLink().orElseThrow());
            assertTrue(images.presentPages() >= rewritten, images.presentPages() + " pages sent, " + rewritten
                    + " rewritten");
            assertTrue(images.presentPages() < ImageDirectory.open(dir1).presentPages() / 2,
                    "the second pre-dump sends the changes only: " + images.presentPages());
            assertTrue(images.parentPages() > 0, "unchanged pages are holes into the first session");

            // the target is idle now: the server's chain equals its memory
            Cli.Result verified = Cli.run("verify", dir2.toString(), "--pid", pid);
            assertEquals(0, verified.exit(), verified.toString());

            // a pre-dump that died after the server committed leaves the state pending: no holes next time
            Files.writeString(state.resolve(PreDumpCommand.STATE_PENDING), "crashed\n");
            Cli.Result third = Cli.run("pre-dump", "--pid", pid, "--to", uri, "--state", state.toString());
            assertEquals(0, third.exit(), third.toString());
            assertTrue(third.err().contains("belongs to a pre-dump that did not finish"), third.err());
            awaitSessions(sessions, 3);
            ImageDirectory whole = ImageDirectory.open(sessions.get(2).directory().orElseThrow()).verify();
            assertEquals(0, whole.parentPages(), "every page written");
            assertTrue(whole.presentPages() >= ImageDirectory.open(dir1).presentPages() - 64, whole.presentPages()
                    + " pages");
            assertFalse(Files.exists(state.resolve(PreDumpCommand.STATE_PENDING)), "the state is good again");
        }
    }

    /**
     * {@code --max-sessions 1}: a second client is closed unanswered while the first is served, and is no
     * session ({@code --sessions 1} still waits for the first); the command prints no line for it.
     */
    @Test
    void maxSessionsRefusesTheConnectionBeyondIt() throws Exception {
        Path received = Files.createDirectory(tmp.resolve("received"));
        int port;
        try (ServerSocket probe = new ServerSocket(0)) {
            port = probe.getLocalPort();
        }
        String portText = Integer.toString(port);
        CompletableFuture<Cli.Result> server = CompletableFuture.supplyAsync(() -> Cli.run("page-server", "--dir",
                received.toString(), "--port", portText, "--sessions", "1", "--max-sessions", "1"));
        try {
            Socket first = null;
            for (int attempt = 0; first == null && attempt < 100 && !server.isDone(); attempt++) {
                try {
                    first = new Socket("127.0.0.1", port);
                } catch (ConnectException notYet) {
                    Thread.sleep(100); // the server thread may not listen yet
                }
            }
            assertTrue(first != null, "the page server listens: " + (server.isDone() ? server.get() : ""));
            try (Socket served = first; Socket refused = new Socket("127.0.0.1", port)) {
                refused.setSoTimeout(30_000);
                assertEquals(-1, refused.getInputStream().read(), "closed at once, no answer");
                assertFalse(server.isDone(), "the refused connection is no session");
            }
            Cli.Result s = server.get(60, TimeUnit.SECONDS);
            assertEquals(1, s.exit(), s.toString()); // the first client hung up before CLOSE
            assertTrue(s.out().contains("session 1 from /127.0.0.1:"), s.out());
            assertTrue(s.out().contains("failed: client closed the connection before CLOSE received=0"), s.out());
            assertFalse(s.out().contains("session 2"), s.out());
            assertFalse(s.out().toLowerCase(java.util.Locale.ROOT).contains("refused"), s.out());
        } finally {
            server.cancel(true);
        }
    }

    @Test
    void maxSessionsMustBePositive() {
        Cli.Result r = Cli.run("page-server", "--dir", tmp.toString(), "--max-sessions", "0");
        assertEquals(2, r.exit(), r.toString());
        assertTrue(r.err().contains("--max-sessions 0 must be at least 1"), r.toString());
    }

    private static void awaitSessions(List<SessionEvent.Completed> sessions, int n) throws InterruptedException {
        for (int i = 0; i < 200 && sessions.size() < n; i++) {
            Thread.sleep(25); // the event may trail the CLOSE answer the client returned on
        }
        assertEquals(n, sessions.size(), sessions.toString());
    }

    @Test
    void aStateDirectoryIsNoParentForLocalImagesAndNoOptionForThem() throws Exception {
        try (SampleProcess target = SampleProcess.start()) {
            String pid = Integer.toString(target.pid());
            Path state = tmp.resolve("state");
            Cli.Result onlyTcp = Cli.run("pre-dump", "--pid", pid, "--out", tmp.resolve("d").toString(), "--state",
                    state.toString());
            assertEquals(2, onlyTcp.exit(), onlyTcp.toString());
            assertTrue(onlyTcp.err().contains("--state " + state + " is for --to tcp:// only"), onlyTcp.err());

            Cli.Result both = Cli.run("pre-dump", "--pid", pid, "--to", "tcp://127.0.0.1:9", "--state",
                    state.toString(), "--parent", tmp.toString());
            assertEquals(2, both.exit(), both.toString());
            assertTrue(both.err().contains("the state directory is the parent"), both.err());

            Files.createDirectories(state);
            Cli.Result made = Cli.run("pre-dump", "--pid", pid, "--out", tmp.resolve("d0").toString());
            assertEquals(0, made.exit(), made.toString());
            Files.copy(tmp.resolve("d0").resolve("pageflux-digests.bin"), state.resolve("pageflux-digests.bin"));
            Cli.Result local = Cli.run("pre-dump", "--pid", pid, "--out", tmp.resolve("d1").toString(), "--parent",
                    state.toString());
            assertEquals(2, local.exit(), local.toString());
            assertTrue(local.err().contains("holds only the page digests of a pre-dump sent to a page server"),
                    local.err());
            assertTrue(target.isAlive());
        }
    }
}
