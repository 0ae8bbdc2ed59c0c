package io.pageflux.sink.pageserver;

import static io.pageflux.sink.pageserver.RawClient.concat;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.source.PagemapId;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link PageServer.Builder#chain}: each session that asks PARENT builds on the newest completed one of its pid. */
class PageServerChainTest {

    @TempDir
    Path tmp;

    @Test
    void criusTwoPreDumpsGetCriusAnswersAndTheSecondIsLinkedToTheFirst() throws Exception {
        Path dir = tmp.resolve("in");
        try (PageServer server = PageServer.builder().directory(dir).port(0).chain(true).start();
             EventLog log = new EventLog(server)) {
            assertArrayEquals(Vectors.bytes("pre-dump-1", "predump1.s2c"),
                    RawClient.exchange(server.boundPort(), Vectors.bytes("pre-dump-1", "predump1.c2s")));
            Path pd1 = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnds(1).get(0)).directory().orElseThrow();
            assertFalse(Files.exists(pd1.resolve("parent"), LinkOption.NOFOLLOW_LINKS), "nothing to build on yet");

            // exactly what CRIU's page server answered with the first pre-dump as --prev-images-dir
            assertArrayEquals(Vectors.bytes("pre-dump-2", "predump2.s2c"),
                    RawClient.exchange(server.boundPort(), Vectors.bytes("pre-dump-2", "predump2.c2s")));
            Path pd2 = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnds(2).get(1)).directory().orElseThrow();
            assertEquals(Path.of("..", pd1.getFileName().toString()), Files.readSymbolicLink(pd2.resolve("parent")));
            ImageDirectory received = ImageDirectory.open(pd2).verify();
            assertEquals(received.parentPages(), received.openParent().orElseThrow().presentPages(),
                    "every hole of pre-dump 2 resolves in pre-dump 1");

            List<SessionEvent.ParentChosen> chosen = log.events.stream().filter(SessionEvent.ParentChosen.class::isInstance)
                    .map(SessionEvent.ParentChosen.class::cast).toList();
            assertEquals(List.of(Optional.empty(), Optional.of(pd1)), chosen.stream()
                    .map(SessionEvent.ParentChosen::parent).toList());

            // a full dump that asks no PARENT is not linked, and OPEN2 says 0 although pid 21384 has sessions
            assertArrayEquals(Vectors.bytes("page-server-dump", "wire.s2c"),
                    RawClient.exchange(server.boundPort(), Vectors.bytes("page-server-dump", "wire.c2s")));
            Path full = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnds(3).get(2)).directory().orElseThrow();
            assertFalse(Files.exists(full.resolve("parent"), LinkOption.NOFOLLOW_LINKS));
        }
    }

    @Test
    void parentAnswersAreTruthfulPerPidAndSharedMemoryAskedFirstGetsZero() throws Exception {
        Path dir = tmp.resolve("in");
        try (PageServer server = PageServer.builder().directory(dir).port(0).chain(true).start();
             EventLog log = new EventLog(server)) {
            RawClient.exchange(server.boundPort(), Vectors.bytes("page-server-dump", "wire.c2s"));
            Path full = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnd()).directory().orElseThrow();
            byte[] parentShmem = PageServerHeader.parent(PagemapId.shmem(32)).toBytes().array();
            byte[] parentOther = PageServerHeader.parent(PagemapId.task(999)).toBytes().array();
            byte[] parentTask = PageServerHeader.parent(PagemapId.task(21384)).toBytes().array();
            byte[] close = PageServerHeader.close().toBytes().array();
            // shmem first: no process named yet, 0; another pid: 0 (and it decides: no parent); then 21384: still 0
            assertArrayEquals(new byte[] {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
                    RawClient.exchange(server.boundPort(), concat(parentShmem, parentOther, parentTask, close)));
            // the task first: its newest session, which also has the shmem pagemap
            assertArrayEquals(new byte[] {1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
                    RawClient.exchange(server.boundPort(), concat(parentTask, parentShmem, parentOther, close)));
            log.awaitEnds(3);
            List<Optional<Path>> chosen = log.events.stream().filter(SessionEvent.ParentChosen.class::isInstance)
                    .map(e -> ((SessionEvent.ParentChosen) e).parent()).toList();
            assertEquals(List.of(Optional.empty(), Optional.of(full)), chosen);
        }
    }

    @Test
    void withoutChainTheParentImagesAreUsedAsBefore() throws Exception {
        Path parent = Vectors.copy("pre-dump-1", tmp.resolve("pd1"), "pagemap-21384.img", "pages-65537.img");
        Path dir = tmp.resolve("in");
        try (PageServer server = PageServer.builder().directory(dir).port(0).parentImages(parent).start();
             EventLog log = new EventLog(server)) {
            RawClient.exchange(server.boundPort(), Vectors.bytes("pre-dump-1", "predump1.c2s"));
            log.awaitEnd();
            RawClient.exchange(server.boundPort(), Vectors.bytes("pre-dump-2", "predump2.c2s"));
            Path pd2 = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnds(2).get(1)).directory().orElseThrow();
            assertEquals(parent.toRealPath(), pd2.resolve("parent").toRealPath());
            assertTrue(log.events.stream().noneMatch(SessionEvent.ParentChosen.class::isInstance));
        }
    }
}
