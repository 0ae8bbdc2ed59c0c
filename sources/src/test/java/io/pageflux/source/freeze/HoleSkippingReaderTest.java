package io.pageflux.source.freeze;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.DumpStats;
import io.pageflux.source.LiveChunkReader;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.PlannedRun;
import io.pageflux.source.PooledBuffer;
import io.pageflux.source.RegionDecision.ReadVia;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Holes decided before the read are passed on without reading their pages; the others are read as usual. */
class HoleSkippingReaderTest {

    private static final int PAGE = 4096;
    private static final byte UNTOUCHED = (byte) 0xEE;

    @Test
    void holesAreNotReadAndReadPagesHoldTheTargetsBytes() throws Exception {
        try (SampleProcess target = SampleProcess.start()) {
            int pid = target.pid();
            long a = target.address(Region.A);
            PagemapId pm = PagemapId.task(pid);
            int present = PageFlags.PE_PRESENT;
            // A's 64 pages: read 0-3, hole 4-9, read 10-11, hole 12-43 (more than a buffer of 16 pages), read 44-63
            List<PlannedRun> plan = List.of(
                    run(new PageRun(a, 4, pm, a, present)),
                    run(new PageRun(a + 4 * PAGE, 6, pm, a + 4 * PAGE, PageFlags.PE_PARENT)),
                    run(new PageRun(a + 10 * PAGE, 2, pm, a + 10 * PAGE, present)),
                    run(new PageRun(a + 12 * PAGE, 32, pm, a + 12 * PAGE, PageFlags.PE_PARENT)),
                    run(new PageRun(a + 44 * PAGE, 20, pm, a + 44 * PAGE, present)));
            DumpStats stats = new DumpStats();
            BufferPool pool = BufferPool.create(DataSize.ofBytes(16 * PAGE), DataSize.ofBytes(16 * PAGE));
            HoleSkippingReader reader = new HoleSkippingReader(plan.iterator(),
                    it -> new LiveChunkReader(it, pid, 8, stats), stats);
            List<List<PageRun>> shapes = new ArrayList<>();
            List<Long> sequences = new ArrayList<>();
            try (reader) {
                while (true) {
                    PooledBuffer buffer = pool.tryAcquire();
                    ByteBuffer raw = buffer.buffer();
                    for (int i = 0; i < raw.capacity(); i++) {
                        raw.put(i, UNTOUCHED);
                    }
                    PageChunk chunk = reader.next(buffer);
                    if (chunk == null) {
                        buffer.release();
                        break;
                    }
                    try {
                        shapes.add(chunk.runs());
                        sequences.add(chunk.sequence());
                        ByteBuffer data = chunk.data();
                        int offset = 0;
                        for (PageRun r : chunk.runs()) {
                            for (long p = 0; p < r.pages(); p++) {
                                byte[] page = new byte[PAGE];
                                data.get(offset, page);
                                long index = (r.address() - a) / PAGE + p;
                                if (PageFlags.has(r.flags(), PageFlags.PE_PARENT)) {
                                    byte[] untouched = new byte[PAGE];
                                    Arrays.fill(untouched, UNTOUCHED);
                                    assertArrayEquals(untouched, page, "hole page " + index + " was not read into");
                                } else {
                                    assertArrayEquals(SampleProcess.expectedPage(Region.A, index), page, "page " + index);
                                }
                                offset += PAGE;
                            }
                        }
                    } finally {
                        chunk.release();
                    }
                }
                assertTrue(reader.exhausted());
            }
            assertEquals(List.of(
                    List.of(new PageRun(a, 4, pm, a, present)),
                    List.of(new PageRun(a + 4 * PAGE, 6, pm, a + 4 * PAGE, PageFlags.PE_PARENT)),
                    List.of(new PageRun(a + 10 * PAGE, 2, pm, a + 10 * PAGE, present)),
                    List.of(new PageRun(a + 12 * PAGE, 16, pm, a + 12 * PAGE, PageFlags.PE_PARENT)),
                    List.of(new PageRun(a + 28 * PAGE, 16, pm, a + 28 * PAGE, PageFlags.PE_PARENT)),
                    List.of(new PageRun(a + 44 * PAGE, 16, pm, a + 44 * PAGE, present)),
                    List.of(new PageRun(a + 60 * PAGE, 4, pm, a + 60 * PAGE, present))), shapes);
            assertEquals(List.of(0L, 1L, 2L, 3L, 4L, 5L, 6L), sequences, "one numbering for read and hole chunks");
            assertEquals(26, reader.pagesRead());
            assertEquals(38, reader.pagesSkipped());
            assertEquals(64, stats.pagesRead(), "holes count as dumped, so progress reaches the plan");
            assertEquals(0, pool.leasedBuffers());
        }
    }

    @Test
    void onlyHolesOrNoHolesAtAll() throws Exception {
        try (SampleProcess target = SampleProcess.start()) {
            int pid = target.pid();
            long a = target.address(Region.A);
            PagemapId pm = PagemapId.task(pid);
            DumpStats stats = new DumpStats();
            BufferPool pool = BufferPool.create(DataSize.ofBytes(64 * PAGE), DataSize.ofBytes(64 * PAGE));
            HoleSkippingReader holes = new HoleSkippingReader(List.of(run(new PageRun(a, 64, pm, a,
                    PageFlags.PE_PARENT))).iterator(), it -> new LiveChunkReader(it, pid, 8, stats), stats);
            PooledBuffer buffer = pool.tryAcquire();
            PageChunk chunk = holes.next(buffer);
            assertEquals(List.of(new PageRun(a, 64, pm, a, PageFlags.PE_PARENT)), chunk.runs());
            chunk.release();
            assertTrue(holes.exhausted());
            PooledBuffer last = pool.tryAcquire();
            assertNull(holes.next(last));
            last.release();
            assertEquals(0, holes.pagesRead());
            holes.close();

            HoleSkippingReader none = new HoleSkippingReader(List.of(run(new PageRun(a, 64, pm, a,
                    PageFlags.PE_PRESENT))).iterator(), it -> new LiveChunkReader(it, pid, 8, stats), stats);
            PooledBuffer b = pool.tryAcquire();
            PageChunk all = none.next(b);
            byte[] first = new byte[PAGE];
            all.data().get(63 * PAGE, first);
            assertArrayEquals(SampleProcess.expectedPage(Region.A, 63), first);
            all.release();
            assertTrue(none.exhausted());
            assertEquals(64, none.pagesRead());
            assertEquals(0, none.pagesSkipped());
            none.close();
            assertEquals(0, pool.leasedBuffers());
        }
    }

    private static PlannedRun run(PageRun run) {
        return new PlannedRun(run, ReadVia.PROCESS_VM_READV);
    }
}
