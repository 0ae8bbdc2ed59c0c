package io.pageflux.sink.pageserver;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.concurrent.TimeUnit;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Replays CRIU 4.2's captured page-server sessions into {@link PageServer}: the answers must be
 * the captured answers byte for byte, and the files must hold the entries and page bytes CRIU's
 * own page server wrote.
 */
class PageServerReplayTest {

    @TempDir
    Path tmp;

    @Test
    void fullDumpCaptureGetsCriusAnswersAndFiles() throws Exception {
        Path out = tmp.resolve("received");
        try (PageServer server = PageServer.builder().directory(out).port(0).start();
             EventLog log = new EventLog(server)) {
            byte[] answer = RawClient.exchange(server.boundPort(), Vectors.bytes("page-server-dump", "wire.c2s"));
            assertArrayEquals(Vectors.bytes("page-server-dump", "wire.s2c"), answer);

            SessionEvent.Completed done = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnd());
            Path dir = done.directory().orElseThrow();
            assertEquals(List.of(dir), visibleChildren(out), "one visible directory, nothing else");
            assertTrue(dir.getFileName().toString().startsWith("21384-"), dir.toString());
            assertEquals(List.of("pagemap-21384.img", "pagemap-shmem-32.img", "pages-65537.img", "pages-65538.img"),
                    fileNames(dir));
            Path criu = Vectors.copy("page-server-dump", tmp.resolve("criu"), "pagemap-21384.img",
                    "pagemap-shmem-32.img", "pages-65537.img", "pages-65538.img");
            assertSameImages(criu, dir);
            assertEquals(488320, done.bytesReceived());
            assertEquals((32768 + 454656) / 4096, done.pages());

            List<SessionEvent.Opened> opened = log.events.stream()
                    .filter(SessionEvent.Opened.class::isInstance).map(SessionEvent.Opened.class::cast).toList();
            assertEquals(List.of(PagemapId.shmem(32), PagemapId.task(21384)),
                    opened.stream().map(SessionEvent.Opened::pagemap).toList());
            assertEquals(List.of(65537L, 65538L), opened.stream().map(SessionEvent.Opened::pagesId).toList());
        }
    }

    @Test
    void firstPreDumpIsToldThereIsNoParent() throws Exception {
        Path out = tmp.resolve("received");
        try (PageServer server = PageServer.builder().directory(out).port(0).start();
             EventLog log = new EventLog(server)) {
            byte[] answer = RawClient.exchange(server.boundPort(), Vectors.bytes("pre-dump-1", "predump1.c2s"));
            assertArrayEquals(Vectors.bytes("pre-dump-1", "predump1.s2c"), answer);
            assertArrayEquals(new byte[] {0, 0, 0, 0, 0, 0, 0, 0, 0}, answer, "PARENT 0, OPEN2 0, CLOSE 0");

            Path dir = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnd()).directory().orElseThrow();
            assertFalse(Files.exists(dir.resolve("parent"), java.nio.file.LinkOption.NOFOLLOW_LINKS));
            Path criu = Vectors.copy("pre-dump-1", tmp.resolve("criu"), "pagemap-21384.img", "pages-65537.img");
            assertSameImages(criu, dir);
        }
    }

    @Test
    void secondPreDumpFindsItsParentAndWritesOnlyHoles() throws Exception {
        Path parent = Vectors.copy("pre-dump-1", tmp.resolve("pd1"), "pagemap-21384.img", "pages-65537.img",
                "inventory.img");
        Path out = tmp.resolve("received");
        try (PageServer server = PageServer.builder().directory(out).port(0).parentImages(parent).start();
             EventLog log = new EventLog(server)) {
            byte[] answer = RawClient.exchange(server.boundPort(), Vectors.bytes("pre-dump-2", "predump2.c2s"));
            assertArrayEquals(Vectors.bytes("pre-dump-2", "predump2.s2c"), answer);
            assertArrayEquals(new byte[] {1, 0, 0, 0, 1, 0, 0, 0, 0}, answer, "PARENT 1, OPEN2 1, CLOSE 0");

            Path dir = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnd()).directory().orElseThrow();
            Path link = Files.readSymbolicLink(dir.resolve("parent"));
            assertFalse(link.isAbsolute(), "CRIU writes the parent link relative: " + link);
            assertEquals(parent.toRealPath(), dir.resolve("parent").toRealPath());
            assertEquals(0, Files.size(dir.resolve("pages-65537.img")));

            Path criu = Vectors.copy("pre-dump-2", tmp.resolve("criu"), "pagemap-21384.img", "pages-65537.img");
            assertSameImages(criu, dir);
            ImageDirectory received = ImageDirectory.open(dir);
            assertTrue(received.pagemaps().get(0).entries().stream().allMatch(e -> e.flags() == PageFlags.PE_PARENT));
            // every hole resolves in the parent the link points at
            ImageDirectory resolvedParent = received.openParent().orElseThrow();
            assertEquals(received.parentPages(), resolvedParent.presentPages(),
                    "pre-dump 2 marks exactly the pages pre-dump 1 has as unchanged");
        }
    }

    /** Debian's crit (3.17, reads compat_nr_pages) decodes the received pagemaps as CRIU 4.2's own JSON shows them. */
    @Test
    void critDecodesTheReceivedPagemapsLikeCriusJson() throws Exception {
        Path crit = Stream.of("/usr/bin/crit", "/usr/sbin/crit").map(Path::of).filter(Files::isExecutable)
                .findFirst().orElse(null);
        Assumptions.assumeTrue(crit != null, "crit is not installed");
        try (PageServer server = PageServer.builder().directory(tmp.resolve("in")).port(0).start();
             EventLog log = new EventLog(server)) {
            RawClient.exchange(server.boundPort(), Vectors.bytes("page-server-dump", "wire.c2s"));
            Path dir = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnd()).directory().orElseThrow();
            for (String name : List.of("pagemap-21384", "pagemap-shmem-32")) {
                Process p = new ProcessBuilder(crit.toString(), "decode", "-i", dir.resolve(name + ".img").toString())
                        .redirectErrorStream(true).start();
                String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
                assertTrue(p.waitFor(30, TimeUnit.SECONDS), "crit timed out");
                assertEquals(0, p.exitValue(), out);
                JsonNode entries = io.pageflux.sink.criu.Vectors.JSON.readTree(out).get("entries");
                Path criuJson = io.pageflux.sink.criu.Vectors.dir("page-server-dump").resolve(name + ".json");
                assertEquals(io.pageflux.sink.criu.Vectors.jsonPagesId(criuJson), entries.get(0).get("pages_id").asLong());
                List<String> decoded = new ArrayList<>();
                for (int i = 1; i < entries.size(); i++) {
                    JsonNode e = entries.get(i);
                    decoded.add(new io.pageflux.sink.criu.Vectors.Entry(e.get("vaddr").asLong(), e.get("nr_pages").asLong(),
                            e.get("flags").asInt()).toString());
                }
                assertEquals(io.pageflux.sink.criu.Vectors.jsonEntries(criuJson).stream().map(Object::toString).toList(),
                        decoded, name);
            }
        }
    }

    /** Same pagemaps, pages_ids, entries (vaddr, count, flags) and page bytes. */
    static void assertSameImages(Path expectedDir, Path actualDir) throws IOException {
        ImageDirectory expected = ImageDirectory.open(expectedDir);
        ImageDirectory actual = ImageDirectory.open(actualDir);
        assertEquals(expected.pagemaps().size(), actual.pagemaps().size());
        for (PagemapImage e : expected.pagemaps()) {
            PagemapImage a = actual.pagemap(e.id()).orElseThrow(() -> new AssertionError("missing " + e.id()));
            assertEquals(e.pagesId(), a.pagesId(), e.id() + " pages_id");
            assertEquals(runs(e), runs(a), e.id() + " entries");
            assertArrayEquals(Files.readAllBytes(expectedDir.resolve(e.pagesFileName())),
                    Files.readAllBytes(actualDir.resolve(a.pagesFileName())), e.id() + " page bytes");
        }
    }

    static List<String> runs(PagemapImage pm) {
        return pm.entries().stream()
                .map(x -> String.format("0x%x+%d %s", x.vaddr(), x.nrPages(), PageFlags.describe(x.flags()))).toList();
    }

    static List<Path> visibleChildren(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> !p.getFileName().toString().equals(SessionDirectories.LOCK_FILE)).sorted().toList();
        }
    }

    static List<String> fileNames(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }
}
