package io.pageflux.sink.pageserver;

import static io.pageflux.sink.pageserver.RawClient.header;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.sink.file.StagingBuffers;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * One session with many shared-memory pagemaps and small runs: network data is never aligned, so
 * every byte is staged; the session's staging memory stays within its writer's bound instead of
 * one buffer per pagemap, and is freed when the session ends.
 */
class PageServerStagingTest {

    private static final int SHMEMS = 100;
    private static final int PAGE = PageRun.PAGE_SIZE;

    @TempDir
    Path tmp;

    @Test
    void aSessionWithAHundredSharedObjectsStagesWithinTheBound() throws Exception {
        long before = StagingBuffers.allocatedBytesInJvm();
        long bound = (long) StagingBuffers.DEFAULT_BUFFERS * StagingBuffers.BYTES_PER_BUFFER;
        List<ByteArrayOutputStream> expected = new ArrayList<>();
        Random rnd = new Random(100);
        try (PageServer server = PageServer.builder().directory(tmp.resolve("in")).port(0).start();
             EventLog log = new EventLog(server);
             Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", server.boundPort()), 5000);
            s.setSoTimeout(30_000);
            OutputStream out = s.getOutputStream();
            DataInputStream in = new DataInputStream(s.getInputStream());
            long peakSeen = 0;
            for (int round = 0; round < 2; round++) {
                for (int i = 0; i < SHMEMS; i++) {
                    PagemapId shm = PagemapId.shmem(500 + i);
                    if (round == 0) {
                        expected.add(new ByteArrayOutputStream());
                    }
                    // runs go to the pagemap opened last (as with CRIU): the second round reopens each one
                    out.write(header(PageServerHeader.open2(shm)));
                    out.flush();
                    assertEquals(0, in.readByte(), "OPEN2 answered: no parent");
                    // the answer means every earlier ADD was written: sample the staging memory now
                    peakSeen = Math.max(peakSeen, StagingBuffers.allocatedBytesInJvm() - before);
                    int pages = 1 + rnd.nextInt(3);
                    byte[] data = new byte[pages * PAGE];
                    rnd.nextBytes(data);
                    long vaddr = (long) round * 16 * PAGE;
                    out.write(header(PageServerHeader.addF(shm, vaddr, pages, PageFlags.PE_PRESENT)));
                    out.write(data);
                    expected.get(i).writeBytes(data);
                }
            }
            out.write(header(PageServerHeader.open2(PagemapId.task(4242))));
            out.flush();
            assertEquals(0, in.readByte());
            peakSeen = Math.max(peakSeen, StagingBuffers.allocatedBytesInJvm() - before);
            assertTrue(peakSeen > 0, "the session staged its pages");
            assertTrue(peakSeen <= bound, "101 pages files of one session staged in " + peakSeen + " bytes, bound " + bound);
            out.write(header(PageServerHeader.close()));
            out.flush();
            s.shutdownOutput(); // the session completes at the end of the stream
            in.readInt(); // CLOSE answered
            SessionEvent.Completed done = assertInstanceOf(SessionEvent.Completed.class, log.awaitEnd());
            assertEquals(before, StagingBuffers.allocatedBytesInJvm(), "freed when the session ended");
            ImageDirectory images = ImageDirectory.open(done.directory().orElseThrow()).verify();
            for (int i = 0; i < SHMEMS; i++) {
                PagemapImage pm = images.pagemap(PagemapId.shmem(500 + i)).orElseThrow();
                assertArrayEquals(expected.get(i).toByteArray(),
                        Files.readAllBytes(done.directory().orElseThrow().resolve(pm.pagesFileName())), "shmem " + (500 + i));
            }
        }
    }
}
