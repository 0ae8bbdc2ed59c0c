package io.pageflux.sink.compress;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.pageflux.sink.file.StagingBuffers;
import io.pageflux.source.PageRun;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Compressed pages files of one directory written in turns through the directory's shared staging buffers. */
class CompressedPagesSharedStagingTest {

    private static final int PAGE = PageRun.PAGE_SIZE;
    private static final int FRAME_PAGES = 4;

    @TempDir
    Path tmp;

    @Test
    void fortyInterleavedFilesReadBackAndStageWithinTheBound() throws IOException {
        Codec codec = Codec.parse("lz4");
        StagingBuffers staging = new StagingBuffers();
        List<CompressedPagesWriter> writers = new ArrayList<>();
        List<ByteArrayOutputStream> raw = new ArrayList<>();
        for (int i = 0; i < 40; i++) {
            writers.add(new CompressedPagesWriter(tmp.resolve(CompressedPagesFormat.pagesFileName(i + 1, codec.algorithm())),
                    codec.algorithm(), FRAME_PAGES * PAGE, true, staging));
            raw.add(new ByteArrayOutputStream());
        }
        Random rnd = new Random(40);
        ByteBuffer out = ByteBuffer.allocateDirect(2 * FRAME_PAGES * PAGE);
        try (Frames frames = new Frames(codec)) {
            for (int n = 0; n < 600; n++) {
                int i = rnd.nextInt(writers.size());
                byte[] pages = new byte[(1 + rnd.nextInt(FRAME_PAGES)) * PAGE];
                // half random (stored as is), half compressible: frames of many sizes
                for (int b = 0; b < pages.length; b += 64) {
                    pages[b] = (byte) rnd.nextInt(rnd.nextBoolean() ? 256 : 4);
                }
                out.clear();
                FrameHeader h = frames.encode(ByteBuffer.allocateDirect(pages.length).put(pages).flip(), out);
                writers.get(i).writeFrame(h, out.flip());
                raw.get(i).writeBytes(pages);
            }
        }
        assertEquals(staging.maxBytes(), staging.peakAllocatedBytes(), "40 files staged in the two shared buffers");
        for (CompressedPagesWriter w : writers) {
            w.finish();
            w.close();
        }
        staging.release();
        assertEquals(0, staging.allocatedBytes());
        for (int i = 0; i < writers.size(); i++) {
            try (CompressedPagesReader r = CompressedPagesReader.open(writers.get(i).file())) {
                ByteArrayOutputStream back = new ByteArrayOutputStream();
                r.transferTo(Channels.newChannel(back));
                assertArrayEquals(raw.get(i).toByteArray(), back.toByteArray(), writers.get(i).file().toString());
            }
        }
    }
}
