package io.pageflux.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.PagemapImage;
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

/** {@code dump --to tcp://}, {@code --compress}, {@code unpack} and {@code page-server} from the command line. */
class DestinationsCliTest {

    @TempDir
    Path tmp;

    @Test
    void malformedDestinationsAreBadInput() {
        Cli.Result noPort = Cli.run("dump", "--pid", "1", "--to", "tcp://127.0.0.1");
        assertEquals(2, noPort.exit(), noPort.toString());
        assertTrue(noPort.err().contains("--to tcp://127.0.0.1: a page server is tcp://HOST:PORT"), noPort.err());

        Cli.Result unknown = Cli.run("dump", "--pid", "1", "--to", "s3://bucket");
        assertEquals(2, unknown.exit(), unknown.toString());
        assertTrue(unknown.err().contains("--to s3://bucket: unknown destination"), unknown.err());
        assertTrue(unknown.err().contains("tcp://HOST:PORT") && unknown.err().contains("dir:PATH"), unknown.err());

        Cli.Result jsonOnStdout = Cli.run("dump", "--pid", "1", "--to", "-", "--json");
        assertEquals(2, jsonOnStdout.exit(), jsonOnStdout.toString());
        assertTrue(jsonOnStdout.err().contains("--to - writes the dump itself to stdout: drop --json"), jsonOnStdout.err());

        Cli.Result badCodec = Cli.run("dump", "--pid", "1", "--to", "null", "--compress", "brotli");
        assertEquals(2, badCodec.exit(), badCodec.toString());
        assertTrue(badCodec.err().contains("--compress brotli"), badCodec.err());
    }

    @Test
    void compressedDumpUnpacksToTheSameImagesAsAPlainDump() throws Exception {
        Path plain = tmp.resolve("plain");
        Path zst = tmp.resolve("zst");
        Path unpacked = tmp.resolve("unpacked");
        try (SampleProcess sample = SampleProcess.start()) {
            String pid = Integer.toString(sample.pid());
            Cli.Result p = Cli.run("dump", "--pid", pid, "--out", plain.toString());
            assertEquals(0, p.exit(), p.toString());
            Cli.Result z = Cli.run("dump", "--pid", pid, "--out", zst.toString(), "--compress", "zstd:3");
            assertEquals(0, z.exit(), z.toString());
            assertTrue(Files.exists(zst.resolve("pages-2.img.zst")), "compressed page data");
            assertTrue(Files.notExists(zst.resolve("pages-2.img")), "no raw page data");

            Cli.Result inspect = Cli.run("inspect", zst.toString());
            assertEquals(0, inspect.exit(), inspect.toString());
            assertTrue(inspect.out().contains("pagemap-" + pid + ".img"), inspect.out());
            // a flipped byte in the compressed page data is caught by inspect (frame checksums)
            Path broken = tmp.resolve("broken");
            Files.createDirectories(broken);
            try (Stream<Path> files = Files.list(zst)) {
                for (Path f : files.toList()) {
                    Files.copy(f, broken.resolve(f.getFileName()));
                }
            }
            Path data = broken.resolve("pages-2.img.zst");
            byte[] raw = Files.readAllBytes(data);
            raw[raw.length / 3] ^= 0x40;
            Files.write(data, raw);
            Cli.Result corrupt = Cli.run("inspect", broken.toString());
            assertEquals(2, corrupt.exit(), corrupt.toString());
            assertTrue(corrupt.err().contains("pages-2.img.zst"), corrupt.err());

            Cli.Result u = Cli.run("unpack", zst.toString(), unpacked.toString());
            assertEquals(0, u.exit(), u.toString());

            ImageDirectory a = ImageDirectory.open(plain).verify();
            ImageDirectory b = ImageDirectory.open(unpacked).verify();
            assertEquals(a.presentPages(), b.presentPages());
            PagemapImage task = b.pagemap(PagemapId.task(sample.pid())).orElseThrow();
            assertEquals(entries(a.pagemap(PagemapId.task(sample.pid())).orElseThrow()), entries(task));
            // region A's bytes came through compression and unpacking intact
            long a0 = sample.address(SampleProcess.Region.A);
            PagemapImage.Entry entry = task.entries().stream().filter(e -> e.vaddr() <= a0 && a0 < e.end())
                    .findFirst().orElseThrow();
            ByteBuffer page = b.readPages(task, entry, (a0 - entry.vaddr()) / 4096, 1);
            byte[] bytes = new byte[4096];
            page.get(bytes);
            assertArrayEquals(SampleProcess.expectedPage(SampleProcess.Region.A, 0), bytes);
        }

        Cli.Result again = Cli.run("unpack", zst.toString(), unpacked.toString());
        assertEquals(2, again.exit(), again.toString());
        assertTrue(again.err().contains("--force"), again.err());
    }

    @Test
    void tlsOptionsNeedAPageServer() {
        Cli.Result r = Cli.run("dump", "--pid", "1", "--to", "null", "--tls-cacert", "ca.pem");
        assertEquals(2, r.exit(), r.toString());
        assertTrue(r.err().contains("--tls-* options apply to --to tcp://HOST:PORT only"), r.err());
    }

    @Test
    void pageServerTransportIsThreadsOrNettyAndTlsIsNetty() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("srv"));
        Cli.Result odd = Cli.run("page-server", "--dir", dir.toString(), "--transport", "epoll");
        assertEquals(2, odd.exit(), odd.toString());
        assertTrue(odd.err().contains("--transport=epoll is not threads or netty"), odd.err());
        Cli.Result tls = Cli.run("page-server", "--dir", dir.toString(), "--transport", "threads", "--tls-cert",
                "server.pem", "--tls-key", "server.key");
        assertEquals(2, tls.exit(), tls.toString());
        assertTrue(tls.err().contains("--transport threads serves plain TCP only: TLS is served by netty"), tls.err());
    }

    @Test
    void pageServerReceivesADumpSentWithToTcp() throws Exception {
        Path received = Files.createDirectories(tmp.resolve("received"));
        Path local = tmp.resolve("local");
        int port;
        try (ServerSocket probe = new ServerSocket(0)) {
            port = probe.getLocalPort();
        }
        String portText = Integer.toString(port);
        CompletableFuture<Cli.Result> server = CompletableFuture.supplyAsync(() -> Cli.run("page-server", "--dir",
                received.toString(), "--port", portText, "--sessions", "1"));
        try (SampleProcess sample = SampleProcess.start()) {
            String pid = Integer.toString(sample.pid());
            Cli.Result sent = null;
            for (int attempt = 0; attempt < 100; attempt++) {
                sent = Cli.run("dump", "--pid", pid, "--to", "tcp://127.0.0.1:" + port);
                if (sent.exit() == 0 || server.isDone()) {
                    break;
                }
                Thread.sleep(100); // the server thread may not listen yet
            }
            assertEquals(0, sent.exit(), sent.toString());
            Cli.Result s = server.get(30, TimeUnit.SECONDS);
            assertEquals(0, s.exit(), s.toString());
            assertTrue(s.out().contains("completed"), s.out());

            assertEquals(0, Cli.run("dump", "--pid", pid, "--out", local.toString()).exit());
            List<Path> sessions;
            try (Stream<Path> list = Files.list(received)) {
                sessions = list.filter(d -> !d.getFileName().toString().startsWith(".")).toList();
            }
            assertEquals(1, sessions.size(), sessions.toString());
            ImageDirectory remote = ImageDirectory.open(sessions.get(0)).verify();
            ImageDirectory mine = ImageDirectory.open(local).verify();
            PagemapId task = PagemapId.task(sample.pid());
            assertEquals(entries(mine.pagemap(task).orElseThrow()), entries(remote.pagemap(task).orElseThrow()));
            assertEquals(65538, remote.pagemap(task).orElseThrow().pagesId(), "page-server ids start at 65537");
        } finally {
            server.cancel(true);
        }
    }

    private static List<String> entries(PagemapImage pagemap) {
        return pagemap.entries().stream()
                .map(e -> Long.toHexString(e.vaddr()) + "+" + e.nrPages() + "/" + e.flags()).toList();
    }
}
