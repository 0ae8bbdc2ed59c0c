package io.pageflux.sink.pageserver;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What a crashed server leaves in its directory is dealt with when the next one starts. */
class PageServerLeftoversTest {

    @TempDir
    Path tmp;

    @Test
    void committedSessionsArePublishedUnfinishedAndDamagedOnesDeleted() throws Exception {
        Path dir = tmp.resolve("in");
        // crash after CLOSE's commit, before the rename to the visible name
        Path committed = Vectors.copy("pre-dump-1", dir.resolve(".incoming-7"), "pagemap-21384.img", "pages-65537.img");
        Files.setLastModifiedTime(committed, FileTime.from(Instant.parse("2026-11-26T01:02:03Z")));
        // crash while receiving: the writer's temporary directory
        Path partial = Files.createDirectories(dir.resolve("..incoming-8.partial-1a2b3c"));
        Files.write(partial.resolve("pages-65537.img"), new byte[4096]);
        // committed, but its pages file lost bytes since (it must not become visible)
        Path damaged = Vectors.copy("pre-dump-1", dir.resolve(".incoming-9"), "pagemap-21384.img", "pages-65537.img");
        Files.write(damaged.resolve("pages-65537.img"), new byte[4096]);
        // not ours: left alone
        Path other = Files.createDirectories(dir.resolve(".keep-me"));

        try (PageServer server = PageServer.builder().directory(dir).port(0).chain(true).start();
             EventLog log = new EventLog(server)) {
            List<Leftover> l = server.leftovers();
            assertEquals(List.of(partial, committed, damaged), l.stream().map(Leftover::path).toList());
            assertEquals(List.of(Leftover.Action.DELETED, Leftover.Action.PUBLISHED, Leftover.Action.DELETED),
                    l.stream().map(Leftover::action).toList());
            Path published = dir.resolve("21384-20261126-010203-r7");
            assertEquals(published, l.get(1).published().orElseThrow());
            assertTrue(l.get(1).describe().startsWith("leftover .incoming-7 published as 21384-20261126-010203-r7:"),
                    l.get(1).describe());
            assertTrue(l.get(2).reason().startsWith("committed but its images do not check out: "), l.get(2).reason());
            assertTrue(l.get(2).reason().contains("size mismatch"), l.get(2).reason());
            PageServerReplayTest.assertSameImages(Vectors.copy("pre-dump-1", tmp.resolve("criu"), "pagemap-21384.img",
                    "pages-65537.img"), published);
            assertEquals(List.of(other, published), PageServerReplayTest.visibleChildren(dir));

            // the recovered session is a completed one: the next pre-dump of pid 21384 chains onto it
            assertArrayEquals(Vectors.bytes("pre-dump-2", "predump2.s2c"),
                    RawClient.exchange(server.boundPort(), Vectors.bytes("pre-dump-2", "predump2.c2s")));
            Path pd2 = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnd()).directory().orElseThrow();
            assertEquals(published.toRealPath(), pd2.resolve("parent").toRealPath());
        }
        // the lock goes with the server, the file stays: deleting it would let a server that opened it just
        // before and one that creates it anew lock two different inodes, and both run on DIR
        assertTrue(Files.exists(dir.resolve(SessionDirectories.LOCK_FILE)));
        try (PageServer again = PageServer.builder().directory(dir).port(0).start()) {
            assertTrue(again.boundPort() > 0, "the next server on DIR starts: the stale file holds no lock");
        }
    }

    @Test
    void aCleanDirectoryHasNoLeftoversAndASecondServerOnItIsRefused() throws Exception {
        Path dir = tmp.resolve("in");
        try (PageServer server = PageServer.builder().directory(dir).port(0).start()) {
            assertEquals(List.of(), server.leftovers());
            PageServerException e = assertThrows(PageServerException.class,
                    () -> PageServer.builder().directory(dir).port(0).start());
            assertEquals("another page server uses dir=" + dir.toAbsolutePath().normalize() + " (it holds "
                    + SessionDirectories.LOCK_FILE + "): give each server its own --dir", e.getMessage());
            assertTrue(server.activeSessions() == 0);
        }
        try (PageServer again = PageServer.builder().directory(dir).port(0).start()) {
            assertEquals(List.of(), again.leftovers(), "a stopped server leaves nothing to recover");
        }
    }
}
