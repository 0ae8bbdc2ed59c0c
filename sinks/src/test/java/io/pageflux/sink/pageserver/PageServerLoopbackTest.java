package io.pageflux.sink.pageserver;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.SinkResult;
import io.pageflux.sink.TestChunks;
import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.Vectors;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.LiveProcess;
import io.pageflux.source.PageFlags;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.sample.SampleProcess;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link PageServerSink} into {@link PageServer} over loopback, compared with local dumps. */
class PageServerLoopbackTest {

    @TempDir
    Path tmp;

    /** Small chunks: CRIU's runs get split across chunks and the pagemaps interleave. */
    private final BufferPool pool = BufferPool.create(DataSize.ofKibibytes(256), DataSize.ofKibibytes(64));

    @AfterEach
    void poolIsEmpty() {
        assertEquals(0, pool.leasedBuffers(), "buffers still leased: " + pool);
    }

    private static DumpContext context() throws Exception {
        return DumpContext.of(Vectors.PID, Vectors.maps(), 1234);
    }

    @Test
    void vectorDumpThroughClientAndServerEqualsTheLocalDump() throws Exception {
        var runs = Vectors.runs(Vectors.dir("full-dump"), 0);
        Path local = tmp.resolve("local");
        PageSinks.criuImages(local).write(context(), TestChunks.stream(runs, pool)).block();

        try (PageServer server = PageServer.builder().directory(tmp.resolve("in")).port(0).start();
             EventLog log = new EventLog(server)) {
            SinkResult sent = PageServerSinks.connect("127.0.0.1", server.boundPort())
                    .write(context(), TestChunks.stream(runs, pool)).block();

            SessionEvent.Completed done = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnd());
            Path received = done.directory().orElseThrow();
            ImageCompare.assertSameExceptPagesIds(local, received);

            ImageDirectory images = ImageDirectory.open(received);
            long present = runs.stream().filter(r -> PageFlags.has(r.run().flags(), PageFlags.PE_PRESENT))
                    .mapToLong(r -> r.run().pages()).sum();
            assertEquals(present, sent.pages());
            assertEquals(present, images.presentPages());
            assertEquals(present, done.pages());
            assertEquals(sent.bytesWritten(), done.bytesReceived(), "every byte sent was received");
            assertTrue(sent.entries() >= images.entries(), "runs split across chunks merge on the server");
            assertEquals("page-server:127.0.0.1:" + server.boundPort(), sent.description());
            // the task's runs surround the shared object: the client re-opened the task pagemap
            long opens = log.events.stream().filter(SessionEvent.Opened.class::isInstance).count();
            assertEquals(2, opens, "each pagemap announced once");
        }
    }

    @Test
    void aServerWritingThroughThePageCacheWritesTheSameFiles() throws Exception {
        var runs = Vectors.runs(Vectors.dir("full-dump"), 0);
        Path local = tmp.resolve("local");
        PageSinks.criuImages(local).write(context(), TestChunks.stream(runs, pool)).block();
        try (PageServer server = PageServer.builder().directory(tmp.resolve("in")).port(0).directIo(false).start();
             EventLog log = new EventLog(server)) {
            PageServerSinks.connect("127.0.0.1", server.boundPort()).write(context(), TestChunks.stream(runs, pool))
                    .block();
            SessionEvent.Completed done = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnd());
            ImageCompare.assertSameExceptPagesIds(local, done.directory().orElseThrow());
        }
    }

    @Test
    void liveSampleProcessTeedToLocalAndRemoteGivesTheSameFiles() throws Exception {
        Path local = tmp.resolve("local");
        try (SampleProcess target = SampleProcess.start();
             PageServer server = PageServer.builder().directory(tmp.resolve("in")).port(0).start();
             EventLog log = new EventLog(server)) {
            LiveProcess process = LiveProcess.attach(target.pid());
            DumpContext context = DumpContext.of(target.pid(), process.regions(), 1);
            var remote = PageServerSinks.connect("127.0.0.1", server.boundPort());
            SinkResult both = PageSinks.tee(PageSinks.criuImages(local), remote)
                    .write(context, process.pages(ReadOptions.of(pool))).block();

            Path received = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnd()).directory().orElseThrow();
            assertTrue(received.getFileName().toString().startsWith(target.pid() + "-"), received.toString());
            ImageCompare.assertSameExceptPagesIds(local, received);
            ImageDirectory images = ImageDirectory.open(received);
            assertTrue(images.presentPages() > 0);
            // region A's first page as the sample wrote it
            assertTrue(both.pages() >= images.presentPages());
        }
    }

    @Test
    void preDumpChainOverTheWire() throws Exception {
        Path in = tmp.resolve("in");
        Path first;
        try (PageServer server = PageServer.builder().directory(in).port(0).start(); EventLog log = new EventLog(server)) {
            PageServerSinks.connect("127.0.0.1", server.boundPort())
                    .write(context(), TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool)).block();
            first = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnd()).directory().orElseThrow();
        }
        // the second dump finds nothing changed: every run is a hole in the first
        var holes = Vectors.runs(Vectors.dir("full-dump"), PageFlags.PE_PARENT);
        DumpContext pre = new DumpContext(Vectors.PID, Vectors.maps(), 5678, true, Optional.of(first));
        try (PageServer server = PageServer.builder().directory(tmp.resolve("in2")).port(0).parentImages(first).start();
             EventLog log = new EventLog(server)) {
            SinkResult sent = PageServerSinks.connect("127.0.0.1", server.boundPort())
                    .write(pre, TestChunks.stream(holes, pool)).block();
            assertEquals(0, sent.pages());
            SessionEvent.Completed done = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnd());
            List<SessionEvent.Opened> opened = log.events.stream().filter(SessionEvent.Opened.class::isInstance)
                    .map(SessionEvent.Opened.class::cast).toList();
            assertTrue(opened.stream().allMatch(SessionEvent.Opened::hasParent), opened.toString());
            ImageDirectory second = ImageDirectory.open(done.directory().orElseThrow());
            ImageDirectory parent = second.openParent().orElseThrow();
            assertEquals(first.toRealPath(), parent.path().toRealPath());
            assertEquals(0, second.presentPages());
            assertEquals(parent.presentPages(), second.parentPages());
        }
    }

    @Test
    void holesAreRefusedWhenTheServerHasNoParent() throws Exception {
        var holes = Vectors.runs(Vectors.dir("full-dump"), PageFlags.PE_PARENT);
        DumpContext pre = new DumpContext(Vectors.PID, Vectors.maps(), 5678, true, Optional.of(tmp.resolve("pd1")));
        try (PageServer server = PageServer.builder().directory(tmp.resolve("in")).port(0).start();
             EventLog log = new EventLog(server)) {
            PageServerException e = assertThrows(PageServerException.class, () -> PageServerSinks
                    .connect("127.0.0.1", server.boundPort()).write(pre, TestChunks.stream(holes, pool)).block());
            assertTrue(e.getMessage().startsWith("page server has no parent images for the dump's holes: server=127.0.0.1:"
                    + server.boundPort() + " pagemap=pagemap-21384.img vaddr=0x"), e.getMessage());
            assertTrue(e.getMessage().contains("--parent-images"), e.getMessage());
            SessionEvent.Failed failed = assertInstanceOf(SessionEvent.Failed.class, log.awaitEnd());
            assertTrue(failed.reason().contains("before CLOSE"), failed.reason());
            assertEquals(List.of(), children(tmp.resolve("in")), "nothing left, not even a hidden directory");
        }
    }

    /** What a server left in {@code dir}, without its lock file. */
    static List<Path> children(Path dir) throws java.io.IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> !p.getFileName().toString().equals(SessionDirectories.LOCK_FILE)).toList();
        }
    }
}
