package io.pageflux.source.incremental;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.BufferPool;
import io.pageflux.source.ChunkReader;
import io.pageflux.source.DataSize;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.PooledBuffer;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

class ChangeDetectorTest {

    private static final PagemapId TASK = PagemapId.task(99);
    private static final PagemapId SHMEM = PagemapId.shmem(5);
    private static final int PAGE = 4096;
    private static final long A = 0x10000000L;

    private final BufferPool pool = BufferPool.create(DataSize.ofKibibytes(256), DataSize.ofKibibytes(64));

    /** A chunk of two runs (8 task pages, 4 shmem pages) whose page i is filled with fill[i]. */
    private PageChunk chunk(PooledBuffer buffer, byte[] fill) {
        ByteBuffer b = buffer.buffer();
        for (int i = 0; i < fill.length; i++) {
            byte[] page = new byte[PAGE];
            Arrays.fill(page, fill[i]);
            b.put(i * PAGE, page);
        }
        List<PageRun> runs = List.of(new PageRun(A, 8, TASK, A, PageFlags.PE_LAZY | PageFlags.PE_PRESENT),
                new PageRun(0x20000000L, 4, SHMEM, 0, PageFlags.PE_PRESENT));
        return PageChunk.of(buffer, fill.length * PAGE, runs, 0);
    }

    private static byte[] fills() {
        byte[] f = new byte[12];
        for (int i = 0; i < f.length; i++) {
            f[i] = (byte) (i + 1);
        }
        return f;
    }

    @Test
    void withoutAParentEveryPageIsChangedAndKeepsItsFlags() {
        ChangeDetector detector = new ChangeDetector(PageDigests.empty());
        PooledBuffer buffer = pool.tryAcquire();
        PageChunk in = chunk(buffer, fills());
        List<PageRun> before = in.runs();
        PageChunk out = detector.classify(in, buffer);
        assertEquals(before, out.runs());
        assertEquals(12, detector.changedPages());
        assertEquals(0, detector.unchangedPages());
        PageDigests digests = detector.digests(99, 5);
        assertEquals(12, digests.pages());
        byte[] page = new byte[PAGE];
        Arrays.fill(page, (byte) 3);
        assertEquals(XxHash64.hash(page, 0), digests.digest(TASK, A + 2 * PAGE));
        Arrays.fill(page, (byte) 10);
        assertEquals(XxHash64.hash(page, 0), digests.digest(SHMEM, PAGE), "shmem digests keyed by offset");
        out.release();
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void unchangedPagesBecomeParentHolesAndChangedOnesStayPresent() {
        ChangeDetector first = new ChangeDetector(PageDigests.empty());
        PooledBuffer b1 = pool.tryAcquire();
        first.classify(chunk(b1, fills()), b1).release();
        PageDigests previous = first.digests(99, 1);

        byte[] now = fills();
        now[0] = 100;  // task page 0
        now[3] = 100;  // task page 3
        now[4] = 100;  // task page 4
        now[11] = 100; // shmem page 3
        ChangeDetector second = new ChangeDetector(previous);
        PooledBuffer b2 = pool.tryAcquire();
        PageChunk in = chunk(b2, now);
        PageChunk out = second.classify(in, b2);
        assertNotSame(in, out);
        int lazy = PageFlags.PE_LAZY | PageFlags.PE_PRESENT;
        assertEquals(List.of(
                new PageRun(A, 1, TASK, A, lazy),
                new PageRun(A + PAGE, 2, TASK, A + PAGE, PageFlags.PE_PARENT),
                new PageRun(A + 3 * PAGE, 2, TASK, A + 3 * PAGE, lazy),
                new PageRun(A + 5 * PAGE, 3, TASK, A + 5 * PAGE, PageFlags.PE_PARENT),
                new PageRun(0x20000000L, 3, SHMEM, 0, PageFlags.PE_PARENT),
                new PageRun(0x20000000L + 3 * PAGE, 1, SHMEM, 3 * PAGE, PageFlags.PE_PRESENT)), out.runs());
        assertEquals(4, second.changedPages());
        assertEquals(8, second.unchangedPages());
        assertEquals(12 * PAGE, out.bytes(), "hole runs keep their bytes in the chunk: offsets stay valid");
        assertEquals(100, out.data().get(3 * PAGE), "the bytes did not move");
        assertEquals(1, pool.leasedBuffers(), "one buffer, one reference: the reader's view was taken over");
        out.release();
        assertEquals(0, pool.leasedBuffers());

        PageDigests next = second.digests(99, 2);
        assertEquals(12, next.pages(), "digests of every page, changed or not");
        assertEquals(previous.digest(TASK, A + PAGE), next.digest(TASK, A + PAGE));
        byte[] changed = new byte[PAGE];
        Arrays.fill(changed, (byte) 100);
        assertEquals(XxHash64.hash(changed, 0), next.digest(SHMEM, 3 * PAGE));
    }

    @Test
    void aPageTheParentDoesNotHaveIsChangedEvenIfItsBytesMatchAnother() {
        PageDigests.Builder b = PageDigests.builder();
        byte[] page = new byte[PAGE];
        Arrays.fill(page, (byte) 1);
        b.add(TASK, A + PAGE, XxHash64.hash(page, 0)); // the parent had page 0's content at page 1 only
        ChangeDetector detector = new ChangeDetector(b.build(99, 1));
        PooledBuffer buffer = pool.tryAcquire();
        PageChunk out = detector.classify(chunk(buffer, fills()), buffer);
        assertEquals(12, detector.changedPages());
        assertEquals(2, out.runs().size());
        out.release();
    }

    @Test
    void wrapsAReaderAndClassifiesEachChunk() throws Exception {
        ChangeDetector first = new ChangeDetector(PageDigests.empty());
        PooledBuffer b1 = pool.tryAcquire();
        first.classify(chunk(b1, fills()), b1).release();

        List<String> calls = new ArrayList<>();
        ChunkReader inner = new ChunkReader() {
            int n;

            @Override
            public PageChunk next(PooledBuffer buffer) {
                calls.add("next");
                return n++ == 0 ? chunk(buffer, fills()) : null;
            }

            @Override
            public void close() {
                calls.add("close");
            }
        };
        ChangeDetector second = new ChangeDetector(first.digests(99, 1));
        try (ChunkReader reader = second.wrap(inner)) {
            PooledBuffer buffer = pool.tryAcquire();
            PageChunk c = reader.next(buffer);
            assertEquals(List.of(new PageRun(A, 8, TASK, A, PageFlags.PE_PARENT),
                    new PageRun(0x20000000L, 4, SHMEM, 0, PageFlags.PE_PARENT)), c.runs());
            c.release();
            PooledBuffer spare = pool.tryAcquire();
            assertEquals(null, reader.next(spare));
            spare.release();
        }
        assertEquals(List.of("next", "next", "close"), calls);
        assertEquals(0, second.changedPages());
        assertEquals(12, second.unchangedPages());
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void refusesAChunkOfAnotherBuffer() {
        ChangeDetector detector = new ChangeDetector(PageDigests.empty());
        PooledBuffer b1 = pool.tryAcquire();
        PooledBuffer b2 = pool.tryAcquire();
        PageChunk c = chunk(b1, fills());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> detector.classify(c, b2));
        assertTrue(e.getMessage().contains("does not wrap the buffer"), e.getMessage());
        c.release();
        b2.release();
        assertEquals(0, pool.leasedBuffers());
    }
}
