package io.pageflux.sink.criu;

import static io.pageflux.source.PageFlags.PE_LAZY;
import static io.pageflux.source.PageFlags.PE_PARENT;
import static io.pageflux.source.PageFlags.PE_PRESENT;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.pageflux.sink.criu.ImageDirectoryWriter.Options;
import io.pageflux.sink.criu.ImageDirectoryWriter.PagemapWriter;
import io.pageflux.sink.criu.proto.PagemapProtos.PagemapEntry;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ImageDirectoryWriterTest {

    @TempDir
    Path tmp;

    private static ByteBuffer pages(long nr, int fill) {
        byte[] b = new byte[(int) (nr * PageRun.PAGE_SIZE)];
        java.util.Arrays.fill(b, (byte) fill);
        return ByteBuffer.wrap(b);
    }

    private List<String> listing(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void mergesContiguousRunsWithEqualFlagsAcrossCalls() throws IOException {
        Path out = tmp.resolve("d");
        try (ImageDirectoryWriter w = ImageDirectoryWriter.create(out, Options.defaults())) {
            PagemapWriter pm = w.openPagemap(PagemapId.task(7));
            pm.add(0x10000, 16, PE_LAZY | PE_PRESENT, pages(16, 0x5c)); // like C ...
            pm.add(0x20000, 1, PE_LAZY | PE_PRESENT, pages(1, 0xa0));   // ... and B's first page: one entry
            pm.add(0x22000, 1, PE_LAZY | PE_PRESENT, pages(1, 0xa2));   // gap: new entry
            pm.add(0x23000, 2, PE_PRESENT, pages(2, 1));                // contiguous, other flags: new entry
            pm.add(0x30000, 3, PE_PARENT, null);
            pm.add(0x33000, 1, PE_PARENT, null);                        // holes merge too
            assertEquals(3, pm.entries(), "the last two entries are still pending");
            w.commit();
            assertEquals(20, w.pages());
            assertEquals(4, w.entries());
        }
        ImageDirectory images = ImageDirectory.open(out).verify();
        PagemapImage pm = images.pagemap(PagemapId.task(7)).orElseThrow();
        assertEquals(List.of(new Vectors.Entry(0x10000, 17, 6), new Vectors.Entry(0x22000, 1, 6),
                new Vectors.Entry(0x23000, 2, 4), new Vectors.Entry(0x30000, 4, 1)), Vectors.entries(pm));
        assertEquals((byte) 0xa0, images.readPages(pm, pm.entries().get(0), 16, 1).get(0));
        assertEquals((byte) 0xa2, images.readPages(pm, pm.entries().get(1)).get(4095));
        assertEquals(List.of("pagemap-7.img", "pages-1.img"), listing(out));
    }

    /** Pages as a pool would hold them: page-aligned direct memory. */
    private static ByteBuffer alignedPages(long nr, int seed) {
        ByteBuffer b = ByteBuffer.allocateDirect((int) (nr + 1) * PageRun.PAGE_SIZE).alignedSlice(PageRun.PAGE_SIZE);
        byte[] bytes = new byte[(int) nr * PageRun.PAGE_SIZE];
        new java.util.Random(seed).nextBytes(bytes);
        return b.put(0, bytes).limit(bytes.length);
    }

    /** Writes a few runs (big aligned, small, heap) and returns whether the pages file was direct. */
    private boolean writeMixedRuns(Path out, Options options) throws IOException {
        try (ImageDirectoryWriter w = ImageDirectoryWriter.create(out, options)) {
            PagemapWriter pm = w.openPagemap(PagemapId.task(7));
            boolean direct = pm.directIo();
            assertEquals(direct, io.pageflux.sink.file.DirectFileOutputTest.openWithODirect(
                    w.temporaryDirectory().resolve("pages-1.img")), "the descriptor's flags agree");
            ByteBuffer big = alignedPages(1024, 1);
            pm.add(0x100000, 1024, PE_PRESENT, big);
            assertEquals(0, big.remaining(), "bytes are consumed");
            pm.add(0x600000, 3, PE_PRESENT, pages(3, 0x33));
            pm.add(0x700000, 2, PE_PARENT, null);
            pm.add(0x800000, 1024, PE_LAZY | PE_PRESENT, alignedPages(1024, 2));
            if (direct) {
                assertTrue(pm.pagesBytesPassedThrough() >= 1024 * PageRun.PAGE_SIZE, "aligned runs are not copied");
            }
            w.commit();
            assertEquals(2051, w.pages());
            return direct;
        }
    }

    @Test
    void pagesFilesAreWrittenWithOdirectByDefaultAndTheBytesAreTheSameWithout() throws IOException {
        assumeTrue(Files.getFileStore(tmp).type().startsWith("ext") || Files.getFileStore(tmp).type().equals("xfs"),
                "O_DIRECT is checked on ext4/xfs only: tmp is " + Files.getFileStore(tmp).type());
        assertTrue(Options.defaults().directIo());
        Path direct = tmp.resolve("direct");
        Path cached = tmp.resolve("cached");
        assertTrue(writeMixedRuns(direct, Options.defaults()), "default: O_DIRECT");
        assertFalse(writeMixedRuns(cached, Options.defaults().withDirectIo(false)), "opted out: page cache");
        assertEquals(List.of("pagemap-7.img", "pages-1.img"), listing(direct));
        for (String f : listing(direct)) {
            assertArrayEquals(Files.readAllBytes(cached.resolve(f)), Files.readAllBytes(direct.resolve(f)), f);
        }
        assertEquals(2051L * PageRun.PAGE_SIZE, Files.size(direct.resolve("pages-1.img")));
        ImageDirectory images = ImageDirectory.open(direct).verify();
        PagemapImage pm = images.pagemap(PagemapId.task(7)).orElseThrow();
        ByteBuffer expected = alignedPages(1024, 2);
        assertEquals(expected.get(4095), images.readPages(pm, pm.entries().get(3)).get(4095));
    }

    @Test
    void writesBothPageCountFields() throws IOException {
        Path out = tmp.resolve("d");
        try (ImageDirectoryWriter w = ImageDirectoryWriter.create(out, Options.defaults())) {
            w.openPagemap(PagemapId.task(7)).add(0x1000, 3, PE_PRESENT, pages(3, 9));
            w.commit();
        }
        try (ImageFileReader r = ImageFileReader.open(out.resolve("pagemap-7.img"), ImageFormat.Kind.PAGEMAP)) {
            r.next(io.pageflux.sink.criu.proto.PagemapProtos.PagemapHead.parser(), "PagemapHead");
            PagemapEntry e = r.next(PagemapEntry.parser(), "PagemapEntry");
            assertEquals(3, e.getCompatNrPages());
            assertEquals(3, e.getNrPages());
            assertEquals(PE_PRESENT, e.getFlags());
            assertFalse(e.hasInParent());
        }
    }

    @Test
    void splitsEntriesLongerThanAU32() throws IOException {
        Path out = tmp.resolve("d");
        long huge = ImageDirectoryWriter.MAX_ENTRY_PAGES + 5;
        try (ImageDirectoryWriter w = ImageDirectoryWriter.create(out, Options.defaults())) {
            w.openPagemap(PagemapId.task(7)).add(0x7f0000000000L, huge, PE_PARENT, null);
            w.commit();
        }
        PagemapImage pm = ImageDirectory.open(out).verify().pagemaps().get(0);
        assertEquals(List.of(new Vectors.Entry(0x7f0000000000L, 0xFFFF_FFFFL, PE_PARENT),
                new Vectors.Entry(0x7f0000000000L + 0xFFFF_FFFFL * 4096, 5, PE_PARENT)), Vectors.entries(pm));
    }

    @Test
    void mergingCanBeTurnedOff() throws IOException {
        Path out = tmp.resolve("d");
        try (ImageDirectoryWriter w = ImageDirectoryWriter.create(out, Options.defaults().withMergeRuns(false))) {
            PagemapWriter pm = w.openPagemap(PagemapId.task(7));
            pm.add(0x1000, 1, PE_PRESENT, pages(1, 1));
            pm.add(0x2000, 1, PE_PRESENT, pages(1, 2));
            w.commit();
        }
        assertEquals(2, ImageDirectory.open(out).entries());
    }

    @Test
    void rejectsOutOfOrderOverlappingAndMismatchedRuns() {
        try (ImageDirectoryWriter w = ImageDirectoryWriter.create(tmp.resolve("d"), Options.defaults())) {
            PagemapWriter pm = w.openPagemap(PagemapId.task(7));
            pm.add(0x10000, 4, PE_PRESENT, pages(4, 1));
            IllegalArgumentException overlap = assertThrows(IllegalArgumentException.class,
                    () -> pm.add(0x13000, 1, PE_PRESENT, pages(1, 1)));
            assertTrue(overlap.getMessage().contains("run out of order: pagemap=pagemap-7.img vaddr=0x13000 pages=1 "
                    + "flags=PE_PRESENT starts at or before the end of the previous run (last byte 0x13fff)"),
                    overlap.getMessage());
            assertThrows(IllegalArgumentException.class, () -> pm.add(0x1000, 1, PE_PRESENT, pages(1, 1)));
            IllegalArgumentException noBytes = assertThrows(IllegalArgumentException.class,
                    () -> pm.add(0x20000, 1, PE_PRESENT, null));
            assertTrue(noBytes.getMessage().contains("PE_PRESENT needs the pages' bytes"), noBytes.getMessage());
            assertThrows(IllegalArgumentException.class, () -> pm.add(0x20000, 1, PE_PARENT, pages(1, 0)));
            assertThrows(IllegalArgumentException.class, () -> pm.add(0x20000, 2, PE_PRESENT, pages(1, 0)));
            assertThrows(IllegalArgumentException.class, () -> pm.add(0x20000, 1, PE_PRESENT | PE_PARENT, pages(1, 0)));
            assertThrows(IllegalArgumentException.class, () -> pm.add(0x20001, 1, PE_PARENT, null));
            assertThrows(IllegalArgumentException.class, () -> pm.add(0x20000, 0, PE_PARENT, null));
            assertThrows(IllegalArgumentException.class, () -> pm.add(0xfffffffffffff000L, 2, PE_PARENT, null));
            // rejected runs wrote nothing: the next valid run continues normally
            pm.add(0x14000, 1, PE_PRESENT, pages(1, 2));
            w.commit();
            assertEquals(5, w.pages());
        }
    }

    @Test
    void theLastPageOfTheAddressSpaceIsAccepted() throws IOException {
        Path out = tmp.resolve("d");
        try (ImageDirectoryWriter w = ImageDirectoryWriter.create(out, Options.defaults())) {
            w.openPagemap(PagemapId.task(7)).add(0xfffffffffffff000L, 1, PE_PARENT, null);
            w.commit();
        }
        assertEquals(0xfffffffffffff000L, ImageDirectory.open(out).verify().pagemaps().get(0).entries().get(0).vaddr());
    }

    @Test
    void pagemapsInterleaveAndShareThePagesIdCounter() throws IOException {
        Path out = tmp.resolve("srv");
        try (ImageDirectoryWriter w = ImageDirectoryWriter.create(out,
                Options.defaults().withFirstPagesId(Options.PAGE_SERVER_FIRST_PAGES_ID))) {
            PagemapWriter shm = w.openPagemap(PagemapId.shmem(32));
            shm.add(0, 2, PE_PRESENT, pages(2, 0xd5));
            PagemapWriter task = w.openPagemap(PagemapId.task(99));
            task.add(0x400000, 1, PE_PRESENT, pages(1, 0x11));
            assertSame(shm, w.openPagemap(PagemapId.shmem(32)), "reopening returns the open writer");
            shm.add(0x2000, 1, PE_PRESENT, pages(1, 0xd6));
            task.add(0x401000, 1, PE_PRESENT, pages(1, 0x12));
            assertEquals(65537, shm.pagesId());
            assertEquals(65538, task.pagesId());
            w.commit();
        }
        ImageDirectory images = ImageDirectory.open(out).verify();
        assertEquals(List.of("pagemap-99.img", "pagemap-shmem-32.img", "pages-65537.img", "pages-65538.img"),
                listing(out));
        PagemapImage shm = images.pagemap(PagemapId.shmem(32)).orElseThrow();
        assertEquals(List.of(new Vectors.Entry(0, 3, PE_PRESENT)), Vectors.entries(shm));
        assertEquals((byte) 0xd6, images.readPages(shm, shm.entries().get(0), 2, 1).get(0));
        PagemapImage task = images.pagemap(PagemapId.task(99)).orElseThrow();
        assertEquals(List.of(new Vectors.Entry(0x400000, 2, PE_PRESENT)), Vectors.entries(task));
        assertArrayEquals(new byte[] {0x11, 0x12}, new byte[] {images.readPages(task, task.entries().get(0)).get(0),
                images.readPages(task, task.entries().get(0)).get(4096)});
    }

    @Test
    void writesTheFilesOnlyIntoATemporarySiblingUntilCommit() throws IOException {
        Path out = tmp.resolve("d");
        ImageDirectoryWriter w = ImageDirectoryWriter.create(out, Options.defaults());
        w.openPagemap(PagemapId.task(1)).add(0x1000, 1, PE_PRESENT, pages(1, 1));
        Path temp = w.temporaryDirectory();
        assertEquals(tmp, temp.getParent());
        assertTrue(temp.getFileName().toString().startsWith(".d.partial-"), temp.toString());
        assertFalse(Files.exists(out));
        w.commit();
        assertTrue(Files.isDirectory(out));
        assertFalse(Files.exists(temp));
        assertEquals(List.of("d"), listing(tmp));
        assertThrows(IllegalStateException.class, () -> w.openPagemap(PagemapId.task(2)));
        w.abort(); // after commit: nothing happens
        assertTrue(Files.isDirectory(out));
    }

    @Test
    void abortDeletesEverythingButNotTheParentLinksTarget() throws IOException {
        Path parent = Files.createDirectory(tmp.resolve("pd1"));
        Files.writeString(parent.resolve("keep"), "x");
        ImageDirectoryWriter w = ImageDirectoryWriter.create(tmp.resolve("pd2"),
                Options.defaults().withParentLink(Path.of("../pd1")));
        w.openPagemap(PagemapId.task(1)).add(0x1000, 1, PE_PARENT, null);
        assertEquals(Path.of("../pd1"), Files.readSymbolicLink(w.temporaryDirectory().resolve("parent")));
        w.abort();
        assertEquals(List.of("pd1"), listing(tmp));
        assertEquals(List.of("keep"), listing(parent));
        IllegalStateException late = assertThrows(IllegalStateException.class,
                () -> w.openPagemap(PagemapId.task(1)));
        assertTrue(late.getMessage().contains("already aborted"), late.getMessage());
    }

    @Test
    void refusesANonEmptyDirectoryUnlessForced() throws IOException {
        Path out = Files.createDirectory(tmp.resolve("d"));
        Files.writeString(out.resolve("old.txt"), "old");
        ImageWriteException e = assertThrows(ImageWriteException.class,
                () -> ImageDirectoryWriter.create(out, Options.defaults()));
        assertEquals(out, e.path());
        assertTrue(e.getMessage().contains("output directory is not empty: dir=" + out + " entries=1"), e.getMessage());
        assertTrue(e.getMessage().contains("--force"), e.getMessage());
        assertEquals(List.of("d"), listing(tmp), "no temporary directory left behind");

        try (ImageDirectoryWriter w = ImageDirectoryWriter.create(out, Options.defaults().withForce(true))) {
            w.openPagemap(PagemapId.task(1)).add(0x1000, 1, PE_PRESENT, pages(1, 1));
            assertTrue(Files.exists(out.resolve("old.txt")), "the old directory stays until commit");
            w.commit();
        }
        assertEquals(List.of("pagemap-1.img", "pages-1.img"), listing(out));
        assertEquals(List.of("d"), listing(tmp), "the replaced directory was deleted");
    }

    @Test
    void anEmptyExistingDirectoryIsFine() throws IOException {
        Path out = Files.createDirectory(tmp.resolve("d"));
        try (ImageDirectoryWriter w = ImageDirectoryWriter.create(out, Options.defaults())) {
            w.openPagemap(PagemapId.task(1));
            w.commit();
        }
        assertEquals(List.of("pagemap-1.img", "pages-1.img"), listing(out));
    }

    @Test
    void refusesAnExistingFile() throws IOException {
        Path out = Files.writeString(tmp.resolve("d"), "not a dir");
        ImageWriteException e = assertThrows(ImageWriteException.class,
                () -> ImageDirectoryWriter.create(out, Options.defaults()));
        assertTrue(e.getMessage().contains("output exists and is not a directory: dir=" + out), e.getMessage());
    }

    @Test
    void unwritableLocationNamesThePath() throws IOException {
        Path file = Files.writeString(tmp.resolve("plainfile"), "x");
        Path out = file.resolve("d");
        ImageWriteException e = assertThrows(ImageWriteException.class,
                () -> ImageDirectoryWriter.create(out, Options.defaults()));
        assertTrue(e.getMessage().contains("dir=" + file), e.getMessage());
        assertTrue(e.getMessage().contains("choose a writable location"), e.getMessage());
        assertEquals(List.of("plainfile"), listing(tmp));
    }

    @Test
    void createsMissingParentDirectories() throws IOException {
        Path out = tmp.resolve("a/b/c");
        try (ImageDirectoryWriter w = ImageDirectoryWriter.create(out, Options.defaults())) {
            w.commit();
        }
        assertTrue(Files.isDirectory(out));
    }

    /** A pages file written by the test itself, as the compressed sink writes its own. */
    private static final class RecordingPagesFile implements ImageDirectoryWriter.PagesFile {
        final Path file;
        final java.nio.channels.FileChannel channel;
        long bytes;
        int finished;
        int closed;

        RecordingPagesFile(Path file) throws IOException {
            this.file = file;
            this.channel = java.nio.channels.FileChannel.open(file, java.nio.file.StandardOpenOption.CREATE_NEW,
                    java.nio.file.StandardOpenOption.WRITE);
        }

        void append(String text) throws IOException {
            bytes += channel.write(ByteBuffer.wrap(text.getBytes(java.nio.charset.StandardCharsets.US_ASCII)));
        }

        @Override
        public Path file() {
            return file;
        }

        @Override
        public long bytesWritten() {
            return bytes;
        }

        @Override
        public void finish() throws IOException {
            finished++;
            channel.close();
        }

        @Override
        public void close() throws IOException {
            closed++;
            channel.close();
        }
    }

    @Test
    void pagesFilesWrittenElsewhereKeepPagemapsAndCommitHere() throws IOException {
        Path out = tmp.resolve("d");
        java.util.Map<PagemapId, RecordingPagesFile> files = new java.util.LinkedHashMap<>();
        Options options = Options.defaults().withPagesFiles((dir, id, pagesId) -> {
            RecordingPagesFile f = new RecordingPagesFile(dir.resolve("pages-" + pagesId + ".custom"));
            files.put(id, f);
            return f;
        });
        ImageDirectoryWriter w = ImageDirectoryWriter.create(out, options);
        PagemapWriter pm = w.openPagemap(PagemapId.task(7));
        assertEquals(w.temporaryDirectory().resolve("pages-1.custom"), files.get(PagemapId.task(7)).file);
        pm.add(0x10000, 2, PE_LAZY | PE_PRESENT, null);
        pm.add(0x12000, 1, PE_LAZY | PE_PRESENT, null);  // merged, as with plain pages files
        pm.add(0x20000, 3, PE_PARENT, null);
        files.get(PagemapId.task(7)).append("twelve bytes");
        IllegalArgumentException withBytes = assertThrows(IllegalArgumentException.class,
                () -> pm.add(0x30000, 1, PE_PRESENT, pages(1, 1)));
        assertTrue(withBytes.getMessage().contains("page data goes to pages-1.custom, written by the caller"),
                withBytes.getMessage());
        assertEquals("pages-1.custom", pm.pagesFileName());
        long ownBytes = w.bytesWritten() - 12;
        w.commit();
        assertEquals(1, files.get(PagemapId.task(7)).finished);
        assertEquals(0, files.get(PagemapId.task(7)).closed);
        assertEquals(3, w.pages());
        assertEquals(2, w.entries());
        assertTrue(w.bytesWritten() > ownBytes + 12, "the pending entries were written on commit, plus 12 bytes");
        assertEquals(List.of("pagemap-7.img", "pages-1.custom"), listing(out));
        assertEquals("twelve bytes", Files.readString(out.resolve("pages-1.custom")));
        PagemapImage image = ImageDirectory.open(out).pagemap(PagemapId.task(7)).orElseThrow();
        assertEquals(List.of(new Vectors.Entry(0x10000, 3, 6), new Vectors.Entry(0x20000, 3, 1)),
                Vectors.entries(image));
        assertEquals(1, image.pagesId());
    }

    @Test
    void pagesFilesWrittenElsewhereAreClosedOnAbortAndFailuresNameTheFile() throws IOException {
        java.util.List<RecordingPagesFile> files = new java.util.ArrayList<>();
        ImageDirectoryWriter w = ImageDirectoryWriter.create(tmp.resolve("d"), Options.defaults()
                .withPagesFiles((dir, id, pagesId) -> {
                    RecordingPagesFile f = new RecordingPagesFile(dir.resolve("pages-" + pagesId + ".custom"));
                    files.add(f);
                    return f;
                }));
        w.openPagemap(PagemapId.task(7)).add(0x10000, 1, PE_PRESENT, null);
        Path temp = w.temporaryDirectory();
        ImageWriteException e = w.writeFailed(files.get(0).file, 4096, new IOException("No space left on device"));
        assertTrue(e.getMessage().contains("file=" + files.get(0).file + " bytesWritten=4096"), e.getMessage());
        assertTrue(e.getMessage().contains("free space on that file system"), e.getMessage());
        assertTrue(w.isAborted());
        assertEquals(1, files.get(0).closed);
        assertEquals(0, files.get(0).finished);
        assertFalse(Files.exists(temp));
        assertEquals(List.of(), listing(tmp));
    }

    @Test
    void aPagesFileFactoryThatFailsAbortsTheDirectory() throws IOException {
        ImageDirectoryWriter w = ImageDirectoryWriter.create(tmp.resolve("d"), Options.defaults()
                .withPagesFiles((dir, id, pagesId) -> {
                    throw new IOException("refused");
                }));
        ImageWriteException e = assertThrows(ImageWriteException.class, () -> w.openPagemap(PagemapId.task(9)));
        assertTrue(e.getMessage().contains("cannot create the pages file of pagemap=" + PagemapId.task(9)
                + " pages_id=1: refused"), e.getMessage());
        assertTrue(w.isAborted());
        assertEquals(List.of(), listing(tmp));
    }
}
