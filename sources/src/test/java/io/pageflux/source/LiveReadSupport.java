package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.RegionDecision.ReadVia;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Hand-made runs over a {@link SampleProcess} and checks of what a reader produced from them. */
final class LiveReadSupport {

    static final int PAGE = PageRun.PAGE_SIZE;

    private final SampleProcess sample;

    LiveReadSupport(SampleProcess sample) {
        this.sample = sample;
    }

    long page(Region region, long page) {
        return sample.address(region) + page * PAGE;
    }

    PlannedRun run(Region region, long firstPage, long pages, ReadVia via) {
        long address = page(region, firstPage);
        PagemapId map = region == Region.D ? PagemapId.shmem(32) : PagemapId.task(sample.pid());
        long vaddr = region == Region.D ? firstPage * PAGE : address;
        return new PlannedRun(new PageRun(address, pages, map, vaddr, PageFlags.PE_PRESENT), via);
    }

    PlannedRun vm(Region region, long firstPage, long pages) {
        return run(region, firstPage, pages, ReadVia.PROCESS_VM_READV);
    }

    PlannedRun mem(Region region, long firstPage, long pages) {
        return run(region, firstPage, pages, ReadVia.PROC_PID_MEM);
    }

    /** What CRIU's full dump selects of A–D: A, B's even pages, C (via /proc/PID/mem), D. */
    List<PlannedRun> fullDumpRuns() {
        List<PlannedRun> runs = new ArrayList<>();
        runs.add(vm(Region.A, 0, 64));
        for (int p = 0; p < 32; p += 2) {
            runs.add(vm(Region.B, p, 1));
        }
        runs.add(mem(Region.C, 0, 16));
        runs.add(vm(Region.D, 0, 8));
        return runs;
    }

    static long pages(List<PlannedRun> runs) {
        return runs.stream().mapToLong(r -> r.run().pages()).sum();
    }

    /** The page (region, index) that {@code address} falls in; fails for addresses outside A–D and X. */
    byte[] expectedAt(long address) {
        long x = sample.address(Region.X);
        if (sample.bulkPages() > 0 && address >= x && address < x + sample.bulkPages() * PAGE) {
            return SampleProcess.expectedPage(Region.X, (address - x) / PAGE);
        }
        for (Region r : List.of(Region.A, Region.B, Region.C, Region.D)) {
            long start = sample.address(r);
            if (address >= start && address < start + (long) r.pages() * PAGE) {
                return SampleProcess.expectedPage(r, (address - start) / PAGE);
            }
        }
        throw new AssertionError(String.format("address 0x%x is in none of A-D, X of %s", address, sample));
    }

    /** Everything one read produced, in order. */
    record Result(List<PageChunk> chunkShapes, List<PageRun> runs, Map<Long, byte[]> pages, byte[] bytes) {
        List<Long> addresses() {
            return new ArrayList<>(pages.keySet());
        }
    }

    /**
     * Checks one chunk: runs add up to its length, every page holds the sample's expected bytes.
     * Appends the chunk's pages (by address) and bytes to the accumulators; does not release it.
     */
    void check(PageChunk chunk, List<PageRun> runs, Map<Long, byte[]> pages, java.io.ByteArrayOutputStream all) {
        ByteBuffer data = chunk.data();
        assertEquals(chunk.bytes(), data.remaining());
        assertTrue(chunk.bytes() > 0, "empty chunk " + chunk);
        long sum = 0;
        int offset = 0;
        for (PageRun run : chunk.runs()) {
            runs.add(run);
            sum += run.bytes();
            for (long p = 0; p < run.pages(); p++) {
                long address = run.address() + p * PAGE;
                byte[] actual = new byte[PAGE];
                data.get(offset, actual);
                offset += PAGE;
                assertArrayEquals(expectedAt(address), actual,
                        String.format("chunk %d page at 0x%x", chunk.sequence(), address));
                byte[] previous = pages.put(address, actual);
                assertEquals(null, previous, String.format("page 0x%x read twice", address));
            }
        }
        assertEquals(chunk.bytes(), sum, "runs must describe exactly the chunk's bytes");
        byte[] copy = new byte[chunk.bytes()];
        data.get(0, copy);
        all.writeBytes(copy);
    }

    /** Reads everything a fresh {@code reader} yields with buffers of {@code pool}, checking and releasing each chunk. */
    Result readAll(ChunkReader reader, BufferPool pool) throws Exception {
        return readAll(reader, pool, 0);
    }

    /** As {@link #readAll(ChunkReader, BufferPool)}, for a reader that already produced {@code firstSequence} chunks. */
    Result readAll(ChunkReader reader, BufferPool pool, long firstSequence) throws Exception {
        List<PageChunk> shapes = new ArrayList<>();
        List<PageRun> runs = new ArrayList<>();
        Map<Long, byte[]> pages = new LinkedHashMap<>();
        java.io.ByteArrayOutputStream all = new java.io.ByteArrayOutputStream();
        long expectedSequence = firstSequence;
        while (true) {
            PageChunk chunk = nextChunk(reader, pool);
            if (chunk == null) {
                break;
            }
            try {
                assertEquals(expectedSequence++, chunk.sequence());
                check(chunk, runs, pages, all);
                shapes.add(chunk);
            } finally {
                chunk.release();
            }
        }
        return new Result(shapes, runs, pages, all.toByteArray());
    }

    /** One {@link ChunkReader#next} the way {@link ChunkStream} calls it: buffer released on null or error. */
    static PageChunk nextChunk(ChunkReader reader, BufferPool pool) throws Exception {
        PooledBuffer buffer = pool.tryAcquire();
        assertTrue(buffer != null, "pool exhausted: " + pool);
        PageChunk chunk;
        try {
            chunk = reader.next(buffer);
        } catch (Exception | Error e) {
            buffer.release();
            throw e;
        }
        if (chunk == null) {
            buffer.release();
        }
        return chunk;
    }

    /** Glues runs that continue each other (same pagemap, contiguous), to compare splits with the plan. */
    static List<PageRun> merged(List<PageRun> runs) {
        List<PageRun> out = new ArrayList<>();
        for (PageRun run : runs) {
            if (!out.isEmpty()) {
                PageRun last = out.get(out.size() - 1);
                if (last.end() == run.address() && last.pagemap().equals(run.pagemap())
                        && last.pagemapVaddr() + last.bytes() == run.pagemapVaddr() && last.flags() == run.flags()) {
                    out.set(out.size() - 1, new PageRun(last.address(), last.pages() + run.pages(), last.pagemap(),
                            last.pagemapVaddr(), last.flags()));
                    continue;
                }
            }
            out.add(run);
        }
        return out;
    }
}
