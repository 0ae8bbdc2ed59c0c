package io.pageflux.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.ImageDirectoryWriter;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import io.pageflux.source.sample.SampleProcess;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code page-server --chain} with {@code migrate --to tcp://}, and the leftovers report, from the command line. */
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
}
