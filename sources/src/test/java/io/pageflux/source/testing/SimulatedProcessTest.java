package io.pageflux.source.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.DumpStats;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.RegionDecision;
import io.pageflux.source.RegionPolicy;
import io.pageflux.source.UnsupportedMappingException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.core.scheduler.Schedulers;

/** The simulated process as a source: layout, contents, policy, determinism. Faults are in {@link SimulatedFaultsTest}. */
class SimulatedProcessTest {

    static final int PAGE = PageRun.PAGE_SIZE;
    static final long BASE = 0x7f00_0000_0000L;

    static ReadOptions options(BufferPool pool) {
        return ReadOptions.of(pool).withPolicy(SimulatedProcess.dumpEveryRegion()).withScheduler(Schedulers.immediate());
    }

    /** Every chunk, with its runs and bytes copied out, each chunk released as soon as it is copied. */
    static List<Copy> drain(Flux<PageChunk> chunks) {
        return chunks.map(c -> {
            try {
                return Copy.of(c);
            } finally {
                c.release();
            }
        }).collectList().block();
    }

    record Copy(long sequence, List<PageRun> runs, ByteBuffer bytes) {
        static Copy of(PageChunk c) {
            ByteBuffer copy = ByteBuffer.allocate(c.bytes()).order(ByteOrder.LITTLE_ENDIAN);
            copy.put(c.data()).flip();
            return new Copy(c.sequence(), c.runs(), copy);
        }
    }

    /** An independent SplitMix64 finalizer, written from its published constants. */
    static long splitmix(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    @Test
    void aDenseRegionIsOneRunSplitIntoFullChunksWithThePatternInEveryWord() {
        SimulatedProcess process = SimulatedProcess.builder().pid(77).seed(5)
                .region(BASE, DataSize.ofKibibytes(200), 1.0)
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(256), DataSize.ofKibibytes(64));
        DumpStats stats = new DumpStats();
        List<Copy> chunks = drain(process.pages(options(pool).withStats(stats)));

        // 200 KiB = 50 pages: 16 + 16 + 16 + 2 pages
        assertEquals(List.of(16L, 16L, 16L, 2L), chunks.stream().map(c -> (long) c.bytes().remaining() / PAGE).toList());
        long expectedAddress = BASE;
        for (Copy c : chunks) {
            assertEquals(1, c.runs().size());
            PageRun run = c.runs().get(0);
            assertEquals(expectedAddress, run.address());
            assertEquals(PagemapId.task(77), run.pagemap());
            assertEquals(run.address(), run.pagemapVaddr());
            assertEquals(PageFlags.PE_PRESENT, run.flags());
            for (int off = 0; off < c.bytes().remaining(); off += 8) {
                long address = run.address() + off;
                assertEquals(splitmix(address ^ splitmix(5)), c.bytes().getLong(off), "word at 0x" + Long.toHexString(address));
            }
            expectedAddress = run.end();
        }
        assertEquals(BASE + 200 * 1024, expectedAddress);
        assertEquals(50, stats.pagesRead());
        assertEquals(50, stats.pagesPlanned());
        assertEquals(4, stats.chunksRead());
        assertEquals(1, stats.runs());
        assertEquals(1, stats.regionsDumped());
        assertEquals(0, pool.leasedBuffers());
        assertEquals(SimulatedProcess.word(5, BASE + 8), splitmix((BASE + 8) ^ splitmix(5)));
    }

    /** Every word of a copied chunk is the documented pattern for its address. */
    static void assertPattern(Copy c, long seed) {
        int off = 0;
        for (PageRun run : c.runs()) {
            for (long a = run.address(); a < run.end(); a += 8, off += 8) {
                assertEquals(splitmix(a ^ splitmix(seed)), c.bytes().getLong(off), "word at 0x" + Long.toHexString(a));
            }
        }
        assertEquals(c.bytes().remaining(), off);
    }

    @Test
    void contentMatchesRejectsBytesOfAnotherSeed() {
        SimulatedProcess process = SimulatedProcess.builder().seed(9).region(BASE, DataSize.ofKibibytes(8), 1.0).build();
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(8), DataSize.ofKibibytes(8));
        PageChunk chunk = process.pages(options(pool)).blockFirst();
        try {
            assertTrue(process.contentMatches(chunk));
            // same layout, other seed: every word differs
            SimulatedProcess other = SimulatedProcess.builder().seed(10).region(BASE, DataSize.ofKibibytes(8), 1.0).build();
            assertFalse(other.contentMatches(chunk));
        } finally {
            chunk.release();
        }
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void sparseRegionsAreDeterministicPerSeedAndHaveTheAskedDensity() {
        DataSize size = DataSize.ofGibibytes(1);
        List<PageRun> a = runs(SimulatedProcess.builder().seed(1).fillPages(false).region(BASE, size, 0.01).build());
        List<PageRun> b = runs(SimulatedProcess.builder().seed(1).fillPages(false).region(BASE, size, 0.01).build());
        List<PageRun> c = runs(SimulatedProcess.builder().seed(2).fillPages(false).region(BASE, size, 0.01).build());
        assertEquals(a, b, "same seed, same pages");
        assertNotEquals(a, c, "another seed, other pages");

        long pages = a.stream().mapToLong(PageRun::pages).sum();
        // 262144 pages at 1%: 2621.44 expected; per 512-page block 5 or 6 pages, so within 512*0.5 either way
        assertTrue(pages >= 2621 - 256 && pages <= 2622 + 256, "present pages " + pages);
        for (int i = 0; i < a.size(); i++) {
            PageRun run = a.get(i);
            assertTrue(run.address() >= BASE && run.end() <= BASE + size.bytes(), run.toString());
            if (i > 0) {
                assertTrue(run.address() > a.get(i - 1).end(), "ascending, separate runs: " + run);
            }
        }
        SimulatedProcess process = SimulatedProcess.builder().seed(1).fillPages(false).region(BASE, size, 0.01).build();
        assertEquals(pages * 4, process.regions().get(0).fields().get("Rss"), "smaps Rss in kB");
        assertEquals(size.bytes() / 1024, process.regions().get(0).fields().get("Size"));
    }

    private static List<PageRun> runs(SimulatedProcess process) {
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(4), DataSize.ofMebibytes(1));
        List<PageRun> runs = new ArrayList<>();
        for (Copy c : drain(process.pages(options(pool)))) {
            runs.addAll(c.runs());
        }
        assertEquals(0, pool.leasedBuffers());
        return mergeTouching(runs);
    }

    /** Runs split at chunk boundaries joined again, to compare layouts independent of the chunk size. */
    private static List<PageRun> mergeTouching(List<PageRun> runs) {
        List<PageRun> out = new ArrayList<>();
        for (PageRun r : runs) {
            PageRun last = out.isEmpty() ? null : out.get(out.size() - 1);
            if (last != null && last.end() == r.address()) {
                out.set(out.size() - 1, new PageRun(last.address(), last.pages() + r.pages(), last.pagemap(),
                        last.pagemapVaddr(), last.flags()));
            } else {
                out.add(r);
            }
        }
        return out;
    }

    @Test
    void aTerabyteSparseRegionIsReadLazily() {
        SimulatedProcess process = SimulatedProcess.builder().fillPages(false)
                .region(SimulatedRegion.anonymous(BASE, DataSize.ofTebibytes(4)).withDensity(0.0001))
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(4), DataSize.ofMebibytes(1));
        DumpStats stats = new DumpStats();
        List<Copy> first = drain(process.pages(options(pool).withStats(stats).withMaxRunsPerRead(8)).take(3));
        assertEquals(3, first.size());
        for (Copy c : first) {
            assertTrue(c.runs().size() <= 8, "at most maxRunsPerRead runs per chunk");
            assertEquals(c.runs().stream().mapToLong(PageRun::bytes).sum(), c.bytes().remaining());
        }
        // 4 TiB = 2^30 pages at 0.01%: about 107374 present; only 3 chunks (< 25 runs) were read
        assertTrue(stats.pagesPlanned() > 100_000 && stats.pagesPlanned() < 115_000, "planned " + stats.pagesPlanned());
        assertTrue(stats.runs() <= 25, "runs computed so far " + stats.runs());
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void thePolicyDecidesWhichRegionsAreReadAndHow() {
        SimulatedProcess process = SimulatedProcess.builder().pid(300).seed(3)
                .region(SimulatedRegion.file(0x400000, DataSize.ofKibibytes(16), "/usr/bin/app", 1234, 0))
                .region(SimulatedRegion.anonymous(0x600000, DataSize.ofKibibytes(16)).withPath("[heap]"))
                .region(SimulatedRegion.sharedAnonymous(0x800000, DataSize.ofKibibytes(8), 99))
                .build();
        List<MemoryRegion> regions = process.regions();
        assertEquals("r--p", regions.get(0).perms());
        assertEquals("/dev/zero (deleted)", regions.get(2).path());
        assertTrue(regions.get(2).sharedAnonymous());
        assertTrue(regions.get(1).hasVmFlag("ac") && regions.get(1).hasVmFlag("wr"));

        // skip file mappings, dump the heap lazily, dump shared memory
        RegionPolicy policy = r -> r.inode() != 0 && !r.sharedAnonymous() ? RegionDecision.skip("file mapping")
                : RegionDecision.dump("anon", RegionDecision.ReadVia.PROCESS_VM_READV,
                        RegionDecision.PageSelection.PRESENT_NOT_ZERO, !r.shared());
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(64), DataSize.ofKibibytes(64));
        DumpStats stats = new DumpStats();
        List<Copy> chunks = drain(process.pages(options(pool).withPolicy(policy).withStats(stats)));
        assertEquals(1, chunks.size());
        List<PageRun> runs = chunks.get(0).runs();
        assertEquals(List.of(
                new PageRun(0x600000, 4, PagemapId.task(300), 0x600000, PageFlags.PE_PRESENT | PageFlags.PE_LAZY),
                new PageRun(0x800000, 2, PagemapId.shmem(99), 0, PageFlags.PE_PRESENT)), runs);
        assertEquals(3, stats.regionsSeen());
        assertEquals(2, stats.regionsDumped());
        assertEquals(Map.of("file mapping", 1L), stats.regionsSkipped());
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void criusOwnSelectionRulesApplyToSimulatedRegions() {
        SimulatedProcess process = SimulatedProcess.builder().pid(400)
                .region(SimulatedRegion.file(0x400000, DataSize.ofKibibytes(8), "/usr/bin/app", 1234, 0))
                .region(SimulatedRegion.anonymous(0x600000, DataSize.ofKibibytes(8)).withPath("[heap]"))
                .region(SimulatedRegion.file(0x700000, DataSize.ofKibibytes(8), "/data/shared.db", 55, 0)
                        .withPerms("rw-s"))
                .region(SimulatedRegion.anonymous(0x7ff000, DataSize.ofKibibytes(8)).withPath("[vvar]")
                        .withPerms("r--p").withVmFlags(java.util.Set.of("rd", "mr", "io", "pf")))
                .region(SimulatedRegion.anonymous(0x801000, DataSize.ofKibibytes(8)).withPath("[vdso]")
                        .withPerms("r-xp").withDensity(0.0))
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(64), DataSize.ofKibibytes(64));
        DumpStats stats = new DumpStats();
        List<Copy> chunks = drain(process.pages(ReadOptions.of(pool).withPolicy(RegionPolicy.criuFullDump())
                .withScheduler(Schedulers.immediate()).withStats(stats)));
        assertEquals(1, chunks.size());
        PagemapId task = PagemapId.task(400);
        assertEquals(List.of(
                new PageRun(0x400000, 2, task, 0x400000, PageFlags.PE_PRESENT),                      // private file
                new PageRun(0x600000, 2, task, 0x600000, PageFlags.PE_PRESENT | PageFlags.PE_LAZY),  // heap: lazy
                new PageRun(0x801000, 2, task, 0x801000, PageFlags.PE_PRESENT)),                     // [vdso]: all pages
                chunks.get(0).runs());
        assertEquals(5, stats.regionsSeen());
        assertEquals(3, stats.regionsDumped());
        assertEquals(2, stats.regionsSkipped().size(), stats.regionsSkipped().toString());
        assertTrue(stats.regionsSkipped().keySet().stream().anyMatch(k -> k.startsWith("[vvar]")));
        assertTrue(stats.regionsSkipped().keySet().stream().anyMatch(k -> k.startsWith("shared file mapping")));
        assertPattern(chunks.get(0), process.seed());
    }

    @Test
    void aRegionThePolicyRefusesFailsTheDumpBeforeAnythingIsRead() {
        SimulatedProcess process = SimulatedProcess.builder().pid(301)
                .region(BASE, DataSize.ofKibibytes(64), 1.0)
                .region(SimulatedRegion.anonymous(BASE + 0x100000, DataSize.ofKibibytes(4)).withPath("/dev/mydevice")
                        .withVmFlags(java.util.Set.of("rd", "wr", "io", "pf")))
                .build();
        RegionPolicy policy = r -> r.hasVmFlag("io") ? RegionDecision.fail("device mapping")
                : SimulatedProcess.dumpEveryRegion().decide(r);
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(64), DataSize.ofKibibytes(64));
        UnsupportedMappingException e = assertThrows(UnsupportedMappingException.class,
                () -> drain(process.pages(options(pool).withPolicy(policy))));
        assertTrue(e.getMessage().contains("pid=301"), e.getMessage());
        assertTrue(e.getMessage().contains("path='/dev/mydevice' reason=device mapping"), e.getMessage());
        assertEquals(0, pool.leasedBuffers());
        assertEquals(1, pool.acquisitions(), "one buffer was taken for the read that failed, none filled");
    }

    @Test
    void selectingAllPagesIgnoresDensity() {
        SimulatedProcess process = SimulatedProcess.builder().fillPages(false)
                .region(BASE, DataSize.ofKibibytes(64), 0.0)
                .build();
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(64), DataSize.ofKibibytes(64));
        assertEquals(List.of(), drain(process.pages(options(pool))), "no page present, nothing to dump");
        RegionPolicy all = r -> RegionDecision.dump("vdso-like", RegionDecision.ReadVia.PROCESS_VM_READV,
                RegionDecision.PageSelection.ALL, false);
        List<Copy> chunks = drain(process.pages(options(pool).withPolicy(all)));
        assertEquals(1, chunks.size());
        assertEquals(List.of(new PageRun(BASE, 16, PagemapId.task(4242), BASE, PageFlags.PE_PRESENT)),
                chunks.get(0).runs());
    }

    @Test
    void rejectsOverlappingRegionsAndBadSettings() {
        IllegalArgumentException overlap = assertThrows(IllegalArgumentException.class, () -> SimulatedProcess.builder()
                .pid(12)
                .region(BASE, DataSize.ofKibibytes(8), 1.0)
                .region(BASE + 4096, DataSize.ofKibibytes(8), 1.0)
                .build());
        assertEquals("regions overlap: pid=12 0x7f0000000000-0x7f0000002000 and 0x7f0000001000-0x7f0000003000; "
                + "give each region its own addresses", overlap.getMessage());
        IllegalArgumentException density = assertThrows(IllegalArgumentException.class,
                () -> SimulatedRegion.anonymous(BASE, DataSize.ofKibibytes(4)).withDensity(1.5));
        assertTrue(density.getMessage().contains("density must be between 0 and 1: start=0x7f0000000000 density=1.5"));
        assertThrows(IllegalArgumentException.class, () -> SimulatedRegion.anonymous(BASE + 1, DataSize.ofKibibytes(4)));
        assertThrows(IllegalArgumentException.class, () -> SimulatedProcess.builder().build());
    }
}
