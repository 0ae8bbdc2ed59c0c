package io.pageflux.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.ImageDirectoryWriter;
import io.pageflux.sink.pageserver.PageServer;
import io.pageflux.sink.pageserver.SessionEvent;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import io.pageflux.source.sample.SampleProcess;
import java.net.ServerSocket;
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
     * Two separate pre-dump commands to a chaining server: the first keeps its digests in a local --state
     * directory, the second names it as --parent, so only the rewritten pages travel and the server links
     * the second session to the first; the chain then equals the target, byte for byte.
     */
    @Test
    void separatePreDumpsOverTcpChainThroughALocalStateDirectory() throws Exception {
        Path received = Files.createDirectory(tmp.resolve("received"));
        Path state1 = tmp.resolve("state-1");
        Path state2 = tmp.resolve("state-2");
        try (SampleProcess target = SampleProcess.start(4, false);
             PageServer server = PageServer.builder().directory(received).port(0).chain(true).start()) {
            List<SessionEvent.Completed> sessions = new CopyOnWriteArrayList<>();
            server.events().ofType(SessionEvent.Completed.class).subscribe(sessions::add);
            String pid = Integer.toString(target.pid());
            String uri = "tcp://127.0.0.1:" + server.boundPort();

            Cli.Result first = Cli.run("pre-dump", "--pid", pid, "--to", uri, "--state", state1.toString());
            assertEquals(0, first.exit(), first.toString());
            assertTrue(Files.isRegularFile(state1.resolve("pageflux-digests.bin")), "the digests stay local");
            try (Stream<Path> files = Files.list(state1)) {
                assertEquals(List.of("pageflux-digests.bin"), files.map(f -> f.getFileName().toString()).toList(),
                        "no images in the state directory: they went to the server");
            }
            long rewritten = target.rewrite();

            Cli.Result second = Cli.run("pre-dump", "--pid", pid, "--to", uri, "--parent", state1.toString(),
                    "--state", state2.toString());
            assertEquals(0, second.exit(), second.toString());
            for (int i = 0; i < 200 && sessions.size() < 2; i++) {
                Thread.sleep(25); // the event may trail the CLOSE answer the client returned on
            }
            assertEquals(2, sessions.size(), sessions.toString());
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
        }
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
