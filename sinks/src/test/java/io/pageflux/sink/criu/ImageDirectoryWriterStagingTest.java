package io.pageflux.sink.criu;

import static io.pageflux.source.PageFlags.PE_PRESENT;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.criu.ImageDirectoryWriter.Options;
import io.pageflux.sink.criu.ImageDirectoryWriter.PagemapWriter;
import io.pageflux.sink.file.StagingBuffers;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A directory with many pagemaps whose runs are small (a target with many shared-memory objects):
 * the pages files share the writer's bounded staging memory, which is freed on commit and on abort.
 */
class ImageDirectoryWriterStagingTest {

    private static final int PAGE = PageRun.PAGE_SIZE;

    @TempDir
    Path tmp;

    /** Adds runs of 1 to 8 pages to {@code shmems} shared objects in random turns; returns each pages file's bytes. */
    private static List<ByteArrayOutputStream> writeInterleaved(ImageDirectoryWriter w, int shmems) {
        Random rnd = new Random(shmems);
        List<PagemapWriter> pms = new ArrayList<>();
        List<ByteArrayOutputStream> expected = new ArrayList<>();
        long[] next = new long[shmems];
        for (int i = 0; i < shmems; i++) {
            pms.add(w.openPagemap(PagemapId.shmem(1000 + i)));
            expected.add(new ByteArrayOutputStream());
        }
        for (int n = 0; n < 20 * shmems; n++) {
            int i = rnd.nextInt(shmems);
            int pages = 1 + rnd.nextInt(8);
            byte[] b = new byte[pages * PAGE];
            rnd.nextBytes(b);
            pms.get(i).add(next[i], pages, PE_PRESENT, ByteBuffer.wrap(b));
            next[i] += (pages + rnd.nextInt(2)) * (long) PAGE;
            expected.get(i).writeBytes(b);
        }
        return expected;
    }

    @Test
    void manySharedObjectsStageWithinTheWritersBoundAndTheMemoryIsFreedOnCommit() throws IOException {
        long jvmBefore = StagingBuffers.allocatedBytesInJvm();
        Path out = tmp.resolve("dump");
        List<ByteArrayOutputStream> expected;
        try (ImageDirectoryWriter w = ImageDirectoryWriter.create(out, Options.defaults())) {
            expected = writeInterleaved(w, 150);
            StagingBuffers staging = w.stagingBuffers();
            assertTrue(staging.peakAllocatedBytes() > 0, "small runs were staged");
            assertTrue(staging.peakAllocatedBytes() <= (long) StagingBuffers.DEFAULT_BUFFERS * StagingBuffers.BYTES_PER_BUFFER,
                    "150 pages files staged in " + staging.peakAllocatedBytes() + " bytes");
            w.commit();
            assertEquals(0, staging.allocatedBytes(), "freed on commit");
        }
        assertEquals(jvmBefore, StagingBuffers.allocatedBytesInJvm());
        ImageDirectory images = ImageDirectory.open(out).verify();
        for (int i = 0; i < expected.size(); i++) {
            PagemapImage pm = images.pagemap(PagemapId.shmem(1000 + i)).orElseThrow();
            assertArrayEquals(expected.get(i).toByteArray(),
                    Files.readAllBytes(out.resolve(ImageDirectoryWriter.pagesFileName(pm.pagesId()))), "shmem " + (1000 + i));
        }
    }

    @Test
    void theStagingMemoryIsFreedOnAbort() {
        long jvmBefore = StagingBuffers.allocatedBytesInJvm();
        Path out = tmp.resolve("dump");
        ImageDirectoryWriter w = ImageDirectoryWriter.create(out, Options.defaults());
        writeInterleaved(w, 20);
        assertEquals(w.stagingBuffers().maxBytes(), w.stagingBuffers().allocatedBytes());
        w.abort();
        assertEquals(0, w.stagingBuffers().allocatedBytes());
        assertEquals(jvmBefore, StagingBuffers.allocatedBytesInJvm());
        assertFalse(Files.exists(out));
    }
}
