package io.pageflux.source;

import static io.pageflux.source.LiveReadSupport.PAGE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import reactor.core.publisher.Flux;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;
import reactor.test.StepVerifier;

/** {@link LiveProcess#pages} end to end: smaps, the region policy, the page scan and the reader on a real target. */
class LiveProcessPagesTest {

    private final Scheduler scheduler = Schedulers.newSingle("live-process-test");
    private final BufferPool pool = BufferPool.create(DataSize.ofKibibytes(256), DataSize.ofKibibytes(64));
    private final DumpStats stats = new DumpStats();

    @AfterEach
    void tearDown() {
        scheduler.dispose();
        assertEquals(0, pool.leasedBuffers(), "buffers still leased: " + pool);
    }

    private ReadOptions options(RegionPolicy policy) {
        return new ReadOptions(policy, pool, ReadOptions.MAX_IOVECS, scheduler, stats);
    }

    /** Every page of every chunk by address, checking runs add up; chunks are released. */
    private static Map<Long, byte[]> collect(Flux<PageChunk> pages, Map<Long, PageRun> runOfPage) {
        Map<Long, byte[]> out = new ConcurrentHashMap<>();
        pages.doOnNext(chunk -> {
            try {
                var data = chunk.data();
                int offset = 0;
                for (PageRun run : chunk.runs()) {
                    for (long p = 0; p < run.pages(); p++) {
                        byte[] bytes = new byte[PAGE];
                        data.get(offset, bytes);
                        offset += PAGE;
                        long address = run.address() + p * PAGE;
                        assertEquals(null, out.put(address, bytes), String.format("page 0x%x twice", address));
                        runOfPage.put(address, run);
                    }
                }
                assertEquals(chunk.bytes(), offset);
            } finally {
                chunk.release();
            }
        }).blockLast(Duration.ofSeconds(60));
        return out;
    }

    @ParameterizedTest
    @EnumSource(value = ScannerKind.class, names = {"PAGEMAP_SCAN", "PAGEMAP_FILE"})
    void aFullDumpHoldsExactlyTheSamplesDumpablePagesWithTheirBytes(ScannerKind kind) throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            LiveProcess live = LiveProcess.attach(sample.pid()).withScanner(kind);
            Map<Long, PageRun> runOfPage = new ConcurrentHashMap<>();
            Map<Long, byte[]> pages = collect(live.pages(options(RegionPolicy.criuFullDump())), runOfPage);
            for (Region r : List.of(Region.A, Region.B, Region.C, Region.D)) {
                for (int p = 0; p < r.pages(); p++) {
                    long address = s.page(r, p);
                    if (r == Region.B && p % 2 == 1) {
                        assertFalse(pages.containsKey(address), "B's odd pages map the zero page: " + p);
                    } else {
                        assertArrayEquals(SampleProcess.expectedPage(r, p), pages.get(address), r + " page " + p);
                    }
                }
            }
            for (int p = 0; p < Region.E.pages(); p++) {
                assertFalse(pages.containsKey(s.page(Region.E, p)), "E was never touched");
            }
            PageRun d = runOfPage.get(s.page(Region.D, 3));
            assertEquals(PagemapId.Kind.SHMEM, d.pagemap().kind(), "D goes to its shmem pagemap");
            assertEquals(3L * PAGE, d.pagemapVaddr() + (s.page(Region.D, 3) - d.address()));
            assertEquals(PagemapId.task(sample.pid()), runOfPage.get(s.page(Region.A, 0)).pagemap());
            assertEquals(pages.size(), stats.pagesRead());
            assertEquals(0, stats.pagesVanished());
        }
    }

    @Test
    void aPreDumpSkipsTheProtNoneRegion() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            Map<Long, byte[]> pages = collect(LiveProcess.attach(sample.pid()).pages(options(RegionPolicy.criuPreDump())),
                    new ConcurrentHashMap<>());
            for (int p = 0; p < Region.C.pages(); p++) {
                assertFalse(pages.containsKey(s.page(Region.C, p)), "C is PROT_NONE");
            }
            assertArrayEquals(SampleProcess.expectedPage(Region.A, 63), pages.get(s.page(Region.A, 63)));
            assertArrayEquals(SampleProcess.expectedPage(Region.D, 0), pages.get(s.page(Region.D, 0)));
        }
    }

    @Test
    void regionsGivenInTheOptionsAreScannedInsteadOfReadingSmapsAgain() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            LiveProcess live = LiveProcess.attach(sample.pid());
            // a snapshot with region A only: what the source reads must come from it, not from a new smaps
            MemoryRegion a = live.regions().stream().filter(r -> r.contains(s.page(Region.A, 0))).findFirst()
                    .orElseThrow();
            Map<Long, byte[]> pages = collect(live.pages(options(RegionPolicy.criuFullDump()).withRegions(List.of(a))),
                    new ConcurrentHashMap<>());
            long planned = stats.pagesPlanned();
            Map<Long, byte[]> all = collect(live.pages(options(RegionPolicy.criuFullDump())), new ConcurrentHashMap<>());
            Set<Long> inA = new TreeSet<>();
            all.keySet().stream().filter(a::contains).forEach(inA::add);
            assertTrue(all.size() > inA.size(), "the full dump has pages outside the region");
            assertEquals(inA, new TreeSet<>(pages.keySet()), "exactly the pages of the given region");
            for (int p = 0; p < Region.A.pages(); p++) {
                assertArrayEquals(SampleProcess.expectedPage(Region.A, p), pages.get(s.page(Region.A, p)), "A page " + p);
            }
            assertEquals(inA.size(), planned);
        }
    }

    @Test
    void regionsAreTheTargetsCurrentMappings() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            List<MemoryRegion> regions = LiveProcess.attach(sample.pid()).regions();
            MemoryRegion c = regions.stream().filter(r -> r.contains(s.page(Region.C, 0))).findFirst().orElseThrow();
            assertTrue(c.protNone(), c.toString());
            MemoryRegion d = regions.stream().filter(r -> r.contains(s.page(Region.D, 0))).findFirst().orElseThrow();
            assertTrue(d.sharedAnonymous(), d.toString());
        }
    }

    @Test
    void aRegionUnmappedWhileStreamingVanishesAndTheRestIsRead() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            long aStart = s.page(Region.A, 0);
            long aEnd = s.page(Region.A, 64);
            List<Long> readInA = new ArrayList<>();
            AtomicBoolean unmapped = new AtomicBoolean();
            Map<Long, byte[]> pages = new ConcurrentHashMap<>();
            // 16 KiB chunks: unmap A as soon as the first chunk holding an A page arrives
            BufferPool small = BufferPool.create(DataSize.ofKibibytes(16), DataSize.ofKibibytes(16));
            ReadOptions options = options(RegionPolicy.criuFullDump()).withPool(small);
            Consumer<PageChunk> onChunk = chunk -> {
                try {
                    var data = chunk.data();
                    int offset = 0;
                    boolean hasA = false;
                    for (PageRun run : chunk.runs()) {
                        for (long p = 0; p < run.pages(); p++, offset += PAGE) {
                            long address = run.address() + p * PAGE;
                            byte[] bytes = new byte[PAGE];
                            data.get(offset, bytes);
                            pages.put(address, bytes);
                            if (address >= aStart && address < aEnd) {
                                readInA.add(address);
                                hasA = true;
                            }
                        }
                    }
                    if (hasA && unmapped.compareAndSet(false, true)) {
                        sample.unmapA();
                    }
                } catch (java.io.IOException e) {
                    throw new java.io.UncheckedIOException(e);
                } finally {
                    chunk.release();
                }
            };
            // one buffer: the next chunk is read only after onChunk (which unmaps A) released this one
            LiveProcess.attach(sample.pid()).pages(options).doOnNext(onChunk).blockLast(Duration.ofSeconds(60));
            assertTrue(unmapped.get());
            // A's pages were either read before the unmap or counted as vanished, each exactly once
            assertTrue(readInA.size() >= 1 && readInA.size() <= 4, "read in A: " + readInA.size());
            assertEquals(64 - readInA.size(), stats.pagesVanished());
            List<Long> expectedVanished = new ArrayList<>();
            for (long a = aStart + readInA.size() * (long) PAGE; a < aEnd; a += PAGE) {
                expectedVanished.add(a);
            }
            assertEquals(expectedVanished, stats.vanishedAddresses());
            // nothing else was lost: B, C, D come after A in the address space and are all there
            for (int p = 0; p < 32; p += 2) {
                assertArrayEquals(SampleProcess.expectedPage(Region.B, p), pages.get(s.page(Region.B, p)));
            }
            assertArrayEquals(SampleProcess.expectedPage(Region.C, 7), pages.get(s.page(Region.C, 7)));
            assertArrayEquals(SampleProcess.expectedPage(Region.D, 7), pages.get(s.page(Region.D, 7)));
            assertEquals(0, small.leasedBuffers());
        }
    }

    @Test
    void aTargetKilledWhileStreamingFailsWithProcessGone() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            BufferPool small = BufferPool.create(DataSize.ofKibibytes(16), DataSize.ofKibibytes(16));
            StepVerifier.create(LiveProcess.attach(sample.pid()).pages(options(RegionPolicy.criuFullDump())
                            .withPool(small)), 1)
                    .consumeNextWith(PageChunk::release)
                    .then(sample::kill)
                    .thenRequest(Long.MAX_VALUE)
                    .thenConsumeWhile(c -> {
                        c.release();
                        return true;
                    })
                    .expectErrorSatisfies(e -> {
                        assertEquals(ProcessGoneException.class, e.getClass(), e.toString());
                        assertEquals(sample.pid(), ((ProcessGoneException) e).pid());
                    })
                    .verify(Duration.ofSeconds(60));
            assertEquals(0, small.leasedBuffers());
        }
    }
}
