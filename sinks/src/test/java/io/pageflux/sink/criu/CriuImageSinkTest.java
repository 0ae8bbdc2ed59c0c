package io.pageflux.sink.criu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.SinkResult;
import io.pageflux.sink.TestChunks;
import io.pageflux.sink.criu.proto.PagemapProtos.PagemapEntry;
import io.pageflux.sink.criu.proto.PagemapProtos.PagemapHead;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.test.publisher.TestPublisher;

/** {@link CriuImageSink} reproduces CRIU 4.2's files from the runs they imply. */
class CriuImageSinkTest {

    static final long UPTIME_PD1 = 1380480000L;
    static final long UPTIME_PD2 = 1382080000L;

    @TempDir
    Path tmp;

    private static DumpContext context(boolean preDump, long uptime, Optional<Path> parent) throws IOException {
        return new DumpContext(Vectors.PID, Vectors.maps(), uptime, preDump, parent);
    }

    private List<String> listing(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    /** CRIU's pagemap file with compat_nr_pages set to the count: what pageflux writes, byte for byte. */
    private static byte[] criuPagemapWithCompatCounts(Path criuFile, long pagesId) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(ImageFormat.Kind.PAGEMAP.header().array());
        out.write(ImageFormat.frame(PagemapHead.newBuilder().setPagesId((int) pagesId).build()));
        try (ImageFileReader r = ImageFileReader.open(criuFile, ImageFormat.Kind.PAGEMAP)) {
            r.next(PagemapHead.parser(), "PagemapHead");
            PagemapEntry e;
            while ((e = r.next(PagemapEntry.parser(), "PagemapEntry")) != null) {
                assertEquals(0, e.getCompatNrPages(), "CRIU 4.2 writes compat_nr_pages = 0");
                out.write(ImageFormat.frame(e.toBuilder().setCompatNrPages((int) e.getNrPages()).build()));
            }
        }
        return out.toByteArray();
    }

    /**
     * The full dump's runs, cut per VMA (so the sink must merge e.g. C + B's first page into
     * CRIU's 17-page entry), in chunks of 1, 16 and 256 pages (runs split across chunks).
     */
    @ParameterizedTest
    @ValueSource(ints = {4, 64, 1024})
    void reproducesCriusFullDump(int chunkKib) throws IOException {
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(4L * chunkKib), DataSize.ofKibibytes(chunkKib));
        Path out = tmp.resolve("dump");
        Path criu = Vectors.dir("full-dump");
        List<Vectors.SourceRun> runs = Vectors.runs(criu, 0);
        assertEquals(27, runs.size(), "the 25 entries are 27 per-VMA runs");

        SinkResult result = PageSinks.criuImages(out)
                .write(context(false, UPTIME_PD1, Optional.empty()), TestChunks.stream(runs, pool))
                .block();

        assertEquals(0, pool.leasedBuffers());
        assertEquals(119, result.pages());
        assertEquals(25, result.entries());
        assertEquals("dir:" + out, result.description());
        // CRIU's pages_id order: the shmem object got 1, the task 2 — and so do we
        assertEquals(List.of("inventory.img", "pagemap-21384.img", "pagemap-shmem-32.img", "pages-1.img",
                "pages-2.img"), listing(out));
        for (String pages : List.of("pages-1.img", "pages-2.img")) {
            assertArrayEquals(Files.readAllBytes(criu.resolve(pages)), Files.readAllBytes(out.resolve(pages)), pages);
        }
        ImageDirectory ours = ImageDirectory.open(out).verify();
        ImageDirectory theirs = ImageDirectory.open(criu);
        for (PagemapImage pm : theirs.pagemaps()) {
            PagemapImage mine = ours.pagemap(pm.id()).orElseThrow();
            assertEquals(pm.pagesId(), mine.pagesId());
            assertEquals(Vectors.entries(pm), Vectors.entries(mine), pm.id().toString());
            // the one deliberate difference: compat_nr_pages carries the count too
            assertArrayEquals(criuPagemapWithCompatCounts(pm.file(), pm.pagesId()),
                    Files.readAllBytes(mine.file()), pm.id().toString());
        }
        long bytes;
        try (Stream<Path> s = Files.list(out)) {
            bytes = s.mapToLong(p -> p.toFile().length()).sum();
        }
        assertEquals(bytes, result.bytesWritten());
    }

    /** A read-mode pre-dump received by a page server: pages_id 65537, CRIU's inventory byte for byte. */
    @Test
    void reproducesCriusPreDump() throws IOException {
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(256), DataSize.ofKibibytes(64));
        Path out = tmp.resolve("pd1");
        Path criu = Vectors.dir("pre-dump-1");
        SinkResult result = PageSinks.criuImages(out, CriuImageOptions.defaults().withFirstPagesId(65537))
                .write(context(true, UPTIME_PD1, Optional.empty()), TestChunks.stream(Vectors.runs(criu, 0), pool))
                .block();

        assertEquals(95, result.pages());
        assertEquals(0, pool.leasedBuffers());
        assertEquals(List.of("inventory.img", "pagemap-21384.img", "pages-65537.img"), listing(out));
        assertArrayEquals(Files.readAllBytes(criu.resolve("inventory.img")), Files.readAllBytes(out.resolve("inventory.img")));
        assertArrayEquals(Files.readAllBytes(criu.resolve("pages-65537.img")),
                Files.readAllBytes(out.resolve("pages-65537.img")));
        assertEquals(Vectors.jsonEntries(criu.resolve("pagemap-21384.json")),
                Vectors.entries(ImageDirectory.open(out).verify().pagemap(PagemapId.task(Vectors.PID)).orElseThrow()));
    }

    /**
     * The second pre-dump: every run a hole (PE_PARENT) against the first. Holes still carry bytes
     * in a chunk; the sink skips them. Entries merge where CRIU's do (0x4a2000: 5 + 1 pages).
     */
    @Test
    void reproducesCriusIncrementalPreDumpWithParentLink() throws IOException {
        Path pd1 = tmp.resolve("pd1");
        Files.createDirectory(pd1);
        Files.copy(Vectors.dir("pre-dump-1").resolve("inventory.img"), pd1.resolve("inventory.img"));
        Path out = tmp.resolve("pd2");
        Path criu = Vectors.dir("pre-dump-2");
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(256), DataSize.ofKibibytes(64));
        SinkResult result = PageSinks.criuImages(out, CriuImageOptions.defaults().withFirstPagesId(65537))
                .write(context(true, UPTIME_PD2, Optional.of(pd1)),
                        TestChunks.stream(Vectors.runs(Vectors.dir("pre-dump-1"), PageFlags.PE_PARENT), pool))
                .block();

        assertEquals(0, result.pages(), "holes are not counted as pages");
        assertEquals(23, result.entries());
        assertEquals(0, pool.leasedBuffers());
        assertEquals(Path.of("../pd1"), Files.readSymbolicLink(out.resolve("parent")));
        assertArrayEquals(Files.readAllBytes(criu.resolve("inventory.img")), Files.readAllBytes(out.resolve("inventory.img")));
        assertEquals(0, Files.size(out.resolve("pages-65537.img")));
        ImageDirectory images = ImageDirectory.open(out).verify();
        assertEquals(Vectors.jsonEntries(criu.resolve("pagemap-21384.json")),
                Vectors.entries(images.pagemap(PagemapId.task(Vectors.PID)).orElseThrow()));
        assertEquals(pd1, images.parent().orElseThrow());
        assertArrayEquals(criuPagemapWithCompatCounts(criu.resolve("pagemap-21384.img"), 65537),
                Files.readAllBytes(out.resolve("pagemap-21384.img")));
    }

    /** Debian's crit 3.17 reads only compat_nr_pages (it calls it nr_pages): it must see the counts. */
    @Test
    void critDecodesOurPagemapsWithTheRightCounts() throws Exception {
        Path crit = Stream.of("/usr/bin/crit", "/usr/sbin/crit").map(Path::of).filter(Files::isExecutable)
                .findFirst().orElse(null);
        Assumptions.assumeTrue(crit != null, "crit is not installed");
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(256), DataSize.ofKibibytes(64));
        Path out = tmp.resolve("dump");
        PageSinks.criuImages(out)
                .write(context(false, UPTIME_PD1, Optional.empty()),
                        TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool))
                .block();

        for (String name : List.of("pagemap-21384", "pagemap-shmem-32")) {
            JsonNode decoded = Vectors.JSON.readTree(run(crit.toString(), "decode", "-i", out.resolve(name + ".img")
                    .toString()));
            assertEquals("PAGEMAP", decoded.get("magic").asText());
            JsonNode entries = decoded.get("entries");
            List<Vectors.Entry> expected = Vectors.jsonEntries(Vectors.dir("full-dump").resolve(name + ".json"));
            assertEquals(expected.size() + 1, entries.size());
            assertEquals(name.contains("shmem") ? 1 : 2, entries.get(0).get("pages_id").asInt());
            for (int i = 0; i < expected.size(); i++) {
                JsonNode e = entries.get(i + 1);
                assertEquals(expected.get(i).vaddr(), e.get("vaddr").asLong(), name + " entry " + i);
                assertEquals(expected.get(i).nrPages(), e.get("nr_pages").asLong(), name + " entry " + i);
                assertEquals(expected.get(i).flags(), e.get("flags").asInt(), name + " entry " + i);
            }
        }
        JsonNode inv = Vectors.JSON.readTree(run(crit.toString(), "decode", "-i", out.resolve("inventory.img").toString()));
        assertEquals("INVENTORY", inv.get("magic").asText());
        assertEquals(0, inv.get("entries").get(0).get("img_version").asInt());
        assertEquals(UPTIME_PD1, inv.get("entries").get(0).get("dump_uptime").asLong());
        assertEquals(2, inv.get("entries").get(0).get("pre_dump_mode").asInt());
    }

    private static String run(String... command) throws Exception {
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        try {
            String output = new String(p.getInputStream().readAllBytes());
            assertTrue(p.waitFor(30, TimeUnit.SECONDS), "crit timed out");
            assertEquals(0, p.exitValue(), output);
            return output;
        } finally {
            p.destroyForcibly();
        }
    }

    @Test
    void failingUpstreamLeavesNoDirectoryAndNoLeases() throws IOException {
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(64), DataSize.ofKibibytes(16));
        Path out = tmp.resolve("dump");
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> PageSinks.criuImages(out)
                .write(context(false, 1, Optional.empty()),
                        TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool, 3))
                .block());
        assertTrue(e.getMessage().contains("after chunk=3"), e.getMessage());
        assertEquals(0, pool.leasedBuffers());
        assertEquals(3, pool.acquisitions() - 1, "three chunks were read, the fourth read failed");
        assertEquals(List.of(), listing(tmp), "neither the final nor the temporary directory remains");
    }

    @Test
    void cancelLeavesNoDirectoryAndReleasesEverything() throws Exception {
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(64), DataSize.ofKibibytes(16));
        TestPublisher<PageChunk> upstream = TestPublisher.create();
        Path out = tmp.resolve("dump");
        List<Vectors.SourceRun> runs = Vectors.runs(Vectors.dir("full-dump"), 0);
        // chunks made by the real reader, emitted by hand so that the cancel comes at a known point
        List<PageChunk> chunks = TestChunks.stream(runs, BufferPool.create(DataSize.ofMebibytes(1),
                DataSize.ofKibibytes(16))).take(4).collectList().block();
        Disposable subscription = PageSinks.criuImages(out, CriuImageOptions.defaults().withChunksInFlight(2))
                .write(context(false, 1, Optional.empty()), upstream.flux())
                .subscribe(r -> { }, err -> { });
        TestChunks.await(() -> upstream.wasRequested(), "the sink's first request");
        upstream.assertMaxRequested(2);
        upstream.next(chunks.get(0));
        TestChunks.await(() -> chunks.get(0).isReleased(), "chunk 0 written and released");
        TestChunks.await(() -> uncheckedListing(tmp).size() == 1, "the temporary directory");
        assertTrue(listing(tmp).get(0).startsWith(".dump.partial-"), listing(tmp).toString());
        // the sink asked for 2: chunk 1 is within its demand, and is being written or queued at the cancel
        upstream.next(chunks.get(1));

        subscription.dispose();

        upstream.assertCancelled();
        TestChunks.await(() -> chunks.get(1).isReleased(), "chunk 1 released");
        TestChunks.await(() -> uncheckedListing(tmp).isEmpty(), "temporary directory deleted");
        assertFalse(Files.exists(out));
        // never handed to the sink: still ours
        assertFalse(chunks.get(2).isReleased());
        chunks.get(2).release();
        chunks.get(3).release();
        assertEquals(0, pool.leasedBuffers());
    }

    /**
     * With the default 4 chunks in flight the sink asks for 3 more once 3 are written, while the
     * 4th it asked for has not even arrived: the reader fills buffers while the disk is still busy.
     * (With a prefetch of 2, Reactor asked again only after both were written.)
     */
    @Test
    void asksForMoreChunksBeforeItsQueueIsEmpty() throws Exception {
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(1), DataSize.ofKibibytes(16));
        TestPublisher<PageChunk> upstream = TestPublisher.create();
        List<Long> requests = new java.util.concurrent.CopyOnWriteArrayList<>();
        List<PageChunk> chunks = TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool)
                .take(4).collectList().block();
        Disposable subscription = PageSinks.criuImages(tmp.resolve("dump"))
                .write(context(false, 1, Optional.empty()), upstream.flux().doOnRequest(requests::add))
                .subscribe(r -> { }, err -> { });
        TestChunks.await(() -> upstream.wasRequested(), "the sink's first request");
        assertEquals(List.of((long) CriuImageOptions.DEFAULT_CHUNKS_IN_FLIGHT), requests);
        assertEquals(4, CriuImageOptions.DEFAULT_CHUNKS_IN_FLIGHT);
        for (int i = 0; i < 3; i++) {
            upstream.next(chunks.get(i));
        }
        TestChunks.await(() -> chunks.get(2).isReleased(), "chunks 0-2 written and released");
        TestChunks.await(() -> requests.size() == 2, "the second request");
        assertEquals(List.of(4L, 3L), requests, "asked for 3 more with one requested chunk still to come");

        subscription.dispose();
        upstream.assertCancelled();
        chunks.get(3).release();
        TestChunks.await(() -> uncheckedListing(tmp).isEmpty(), "temporary directory deleted");
        assertEquals(0, pool.leasedBuffers());
    }

    /** What the launcher runs before writing its class archive: everything initialises, no file is touched. */
    @Test
    void initializesTheWritersClassesWithoutTouchingFiles() throws IOException {
        long staged = io.pageflux.sink.file.StagingBuffers.allocatedBytesInJvm();
        assertTrue(CriuImageSink.initializeClasses());
        assertTrue(CriuImageSink.initializeClasses(), "again: cheap and still true");
        assertEquals(staged, io.pageflux.sink.file.StagingBuffers.allocatedBytesInJvm());
        assertEquals(List.of(), listing(tmp));
    }

    private List<String> uncheckedListing(Path dir) {
        try {
            return listing(dir);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @Test
    void nonEmptyDirectoryIsRefusedWithoutReadingAnything() throws IOException {
        Path out = Files.createDirectory(tmp.resolve("dump"));
        Files.writeString(out.resolve("x"), "x");
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(64), DataSize.ofKibibytes(16));
        ImageWriteException e = assertThrows(ImageWriteException.class, () -> PageSinks.criuImages(out)
                .write(context(false, 1, Optional.empty()),
                        TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool))
                .block());
        assertTrue(e.getMessage().contains("output directory is not empty: dir=" + out), e.getMessage());
        assertEquals(0, pool.acquisitions(), "nothing was read");
        assertEquals(List.of("dump"), listing(tmp));

        SinkResult forced = PageSinks.criuImages(out, CriuImageOptions.defaults().withForce(true))
                .write(context(false, 1, Optional.empty()),
                        TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool))
                .block();
        assertEquals(119, forced.pages());
        assertFalse(Files.exists(out.resolve("x")));
    }

    /** ENOSPC on a 256 KiB tmpfs: the error names the file and its bytes; nothing looks complete. */
    @Test
    void diskFullNamesTheFileAndLeavesNothing() throws Exception {
        Path mnt = Files.createDirectory(tmp.resolve("small"));
        Process mount = new ProcessBuilder("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt.toString())
                .redirectErrorStream(true).start();
        boolean mounted = mount.waitFor(30, TimeUnit.SECONDS) && mount.exitValue() == 0;
        Assumptions.assumeTrue(mounted, "cannot mount a tmpfs here (not root?): "
                + new String(mount.getInputStream().readAllBytes()));
        try {
            BufferPool pool = BufferPool.create(DataSize.ofKibibytes(256), DataSize.ofKibibytes(64));
            Path out = mnt.resolve("dump");
            // 119 pages = 476 KiB, almost twice what fits
            ImageWriteException e = assertThrows(ImageWriteException.class, () -> PageSinks.criuImages(out)
                    .write(context(false, 1, Optional.empty()),
                            TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool))
                    .block());
            assertTrue(e.getMessage().contains("No space left on device"), e.getMessage());
            assertTrue(e.getMessage().matches("(?s).*file=" + mnt + "/\\.dump\\.partial-[0-9a-f]+/pages-2\\.img "
                    + "bytesWritten=\\d+ totalBytesWritten=\\d+.*"), e.getMessage());
            assertTrue(e.getMessage().contains("free space on that file system or write the dump elsewhere"),
                    e.getMessage());
            assertTrue(e.getMessage().contains("dir=" + out + " was not created"), e.getMessage());
            assertEquals(0, pool.leasedBuffers());
            assertEquals(List.of(), listing(mnt));
        } finally {
            Process umount = new ProcessBuilder("umount", mnt.toString()).redirectErrorStream(true).start();
            assertTrue(umount.waitFor(30, TimeUnit.SECONDS) && umount.exitValue() == 0,
                    "umount " + mnt + ": " + new String(umount.getInputStream().readAllBytes()));
        }
    }

    @Test
    void pagemapOrderMirrorsCriu() throws IOException {
        assertEquals(List.of(PagemapId.shmem(32), PagemapId.task(Vectors.PID)),
                List.copyOf(CriuLayout.pagemapOrder(context(false, 1, Optional.empty()))));
        assertEquals(List.of(PagemapId.task(Vectors.PID)),
                List.copyOf(CriuLayout.pagemapOrder(context(true, 1, Optional.empty()))));
    }

    @Test
    void writeErrorIsAnImageWriteException() {
        assertInstanceOf(io.pageflux.source.PagefluxException.class, new ImageWriteException(tmp, "x"));
        Flux<PageChunk> none = Flux.empty();
        assertThrows(ImageWriteException.class, () -> PageSinks.criuImages(Path.of("/proc/1/nope/dump"))
                .write(DumpContext.of(1, List.of(), 0), none).block());
    }
}
