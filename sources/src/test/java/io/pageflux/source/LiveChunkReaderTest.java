package io.pageflux.source;

import static io.pageflux.source.LiveReadSupport.PAGE;
import static io.pageflux.source.LiveReadSupport.merged;
import static io.pageflux.source.LiveReadSupport.nextChunk;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.LongStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** {@link LiveChunkReader} against a real {@link SampleProcess}, with hand-made runs. */
class LiveChunkReaderTest {

    private BufferPool pool;
    private final DumpStats stats = new DumpStats();

    private BufferPool pool(int chunkPages) {
        pool = BufferPool.create(DataSize.ofBytes(2L * chunkPages * PAGE), DataSize.ofBytes((long) chunkPages * PAGE));
        return pool;
    }

    @AfterEach
    void poolIsEmpty() {
        if (pool != null) {
            assertEquals(0, pool.leasedBuffers(), "buffers still leased: " + pool);
        }
    }

    private LiveChunkReader reader(SampleProcess sample, List<PlannedRun> runs, int maxRunsPerRead) {
        return new LiveChunkReader(runs.iterator(), sample.pid(), maxRunsPerRead, stats);
    }

    private static List<PageRun> plain(List<PlannedRun> runs) {
        return runs.stream().map(PlannedRun::run).collect(Collectors.toList());
    }

    @Test
    void readsARegionsBEvenPagesCViaProcMemAndDByteForByteInOneChunk() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            List<PlannedRun> runs = s.fullDumpRuns();
            LiveReadSupport.Result result;
            try (LiveChunkReader reader = reader(sample, runs, ReadOptions.MAX_IOVECS)) {
                result = s.readAll(reader, pool(1024));
            }
            assertEquals(1, result.chunkShapes().size());
            // one chunk holding every run unchanged, in plan order
            assertEquals(plain(runs), result.runs());
            assertEquals(64 + 16 + 16 + 8, result.pages().size());
            assertEquals(64 + 16 + 16 + 8, stats.pagesRead());
            assertEquals(1, stats.chunksRead());
            assertEquals(0, stats.pagesVanished());
            // C is PROT_NONE: only /proc/PID/mem reads it, and its bytes are the sample's
            assertArrayEquals(SampleProcess.expectedPage(Region.C, 15), result.pages().get(s.page(Region.C, 15)));
            assertFalse(result.pages().containsKey(s.page(Region.B, 1)), "odd B pages were not planned");
        }
    }

    @ParameterizedTest(name = "chunk of {0} pages")
    @ValueSource(ints = {1, 3, 4, 64})
    void smallChunksSplitRunsAtTheBufferEndAndContinueThemInTheNextChunk(int chunkPages) throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            List<PlannedRun> runs = s.fullDumpRuns();
            long total = LiveReadSupport.pages(runs);
            LiveReadSupport.Result result;
            try (LiveChunkReader reader = reader(sample, runs, ReadOptions.MAX_IOVECS)) {
                result = s.readAll(reader, pool(chunkPages));
            }
            assertEquals((total + chunkPages - 1) / chunkPages, result.chunkShapes().size());
            for (int i = 0; i < result.chunkShapes().size() - 1; i++) {
                assertEquals(chunkPages * PAGE, result.chunkShapes().get(i).bytes(), "every chunk but the last is full");
            }
            assertEquals(total, result.pages().size());
            // the pieces put back together are the plan (pagemap vaddrs of the pieces included)
            assertEquals(merged(plain(runs)), merged(result.runs()));
            assertEquals(0, stats.pagesVanished());
        }
    }

    @Test
    void aRunLongerThanTheChunkIsSlicedWithMatchingPagemapAddresses() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            // D is shared anonymous: its pagemap vaddr is an offset into the object, not the address
            List<PlannedRun> runs = List.of(s.vm(Region.D, 0, 8));
            LiveReadSupport.Result result;
            try (LiveChunkReader reader = reader(sample, runs, ReadOptions.MAX_IOVECS)) {
                result = s.readAll(reader, pool(3));
            }
            assertEquals(List.of(3L, 3L, 2L), result.runs().stream().map(PageRun::pages).toList());
            assertEquals(List.of(0L, 3L * PAGE, 6L * PAGE), result.runs().stream().map(PageRun::pagemapVaddr).toList());
            assertEquals(List.of(s.page(Region.D, 0), s.page(Region.D, 3), s.page(Region.D, 6)),
                    result.runs().stream().map(PageRun::address).toList());
        }
    }

    @Test
    void oneRunPerCallAndAThousandRunsPerCallGiveTheSameBytes() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            List<PlannedRun> runs = new ArrayList<>();
            // single-page runs in reverse address order, so batching cannot hide an ordering bug
            for (int p = 63; p >= 0; p--) {
                runs.add(s.vm(Region.A, p, 1));
            }
            for (int p = 30; p >= 0; p -= 2) {
                runs.add(s.vm(Region.B, p, 1));
            }
            runs.add(s.mem(Region.C, 0, 16));
            runs.add(s.vm(Region.D, 0, 8));
            byte[] one;
            byte[] many;
            byte[] seven;
            try (LiveChunkReader reader = reader(sample, runs, 1)) {
                one = readAllBytes(s, reader, 16);
            }
            pool = null;
            try (LiveChunkReader reader = reader(sample, runs, ReadOptions.MAX_IOVECS)) {
                many = readAllBytes(s, reader, 16);
            }
            pool = null;
            try (LiveChunkReader reader = reader(sample, runs, 7)) {
                seven = readAllBytes(s, reader, 5);
            }
            assertEquals(LiveReadSupport.pages(runs) * PAGE, one.length);
            assertArrayEquals(one, many);
            assertArrayEquals(one, seven);
            byte[] firstPage = new byte[PAGE];
            System.arraycopy(one, 0, firstPage, 0, PAGE);
            assertArrayEquals(SampleProcess.expectedPage(Region.A, 63), firstPage);
        }
    }

    /** Runs over the 8 MiB bulk region X and A, in an order no batching could produce by accident. */
    private static List<PlannedRun> bulkRuns(LiveReadSupport s) {
        List<PlannedRun> runs = new ArrayList<>();
        runs.add(s.vm(Region.X, 1024, 1024));        // 4 MiB: cut by every chunk boundary
        for (int p = 63; p >= 0; p -= 3) {
            runs.add(s.vm(Region.A, p, 1));
        }
        for (int p = 1000; p >= 0; p -= 40) {        // 26 small runs, descending
            runs.add(s.vm(Region.X, p, 7));
        }
        return runs;
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 3, 16})
    void severalReadThreadsMakeExactlyTheChunksOfOne(int threads) throws Exception {
        try (SampleProcess sample = SampleProcess.start(8, false)) {
            LiveReadSupport s = new LiveReadSupport(sample);
            List<PlannedRun> runs = bulkRuns(s);
            LiveReadSupport.Result one;
            try (LiveChunkReader reader = reader(sample, runs, ReadOptions.MAX_IOVECS)) {
                one = s.readAll(reader, pool(512)); // 2 MiB chunks: above the parallel threshold
            }
            pool = null;
            LiveReadSupport.Result parallel;
            try (LiveChunkReader reader = new LiveChunkReader(runs.iterator(), sample.pid(), ReadOptions.MAX_IOVECS,
                    stats, threads)) {
                parallel = s.readAll(reader, pool(512));
                assertTrue(reader.batchesInParts() >= 2, "batches read in parts: " + reader.batchesInParts());
            }
            assertEquals(LiveReadSupport.pages(runs) * PAGE, parallel.bytes().length);
            assertArrayEquals(one.bytes(), parallel.bytes());
            assertEquals(one.runs(), parallel.runs());
            assertEquals(one.chunkShapes().stream().map(PageChunk::runs).toList(),
                    parallel.chunkShapes().stream().map(PageChunk::runs).toList());
            assertEquals(0, stats.pagesVanished());
        }
    }

    @Test
    void aPartThatMeetsAVanishedPageIsReadAgainOneCallAtATime() throws Exception {
        try (SampleProcess sample = SampleProcess.start(8, false)) {
            LiveReadSupport s = new LiveReadSupport(sample);
            sample.unmapA();
            // one 2 MiB batch: X 0..127, all of A (gone), X 128..383: the first half meets A and comes back short
            List<PlannedRun> runs = List.of(s.vm(Region.X, 0, 128), s.vm(Region.A, 0, 64), s.vm(Region.X, 128, 256));
            LiveReadSupport.Result result;
            try (LiveChunkReader reader = new LiveChunkReader(runs.iterator(), sample.pid(), ReadOptions.MAX_IOVECS,
                    stats, 2)) {
                result = s.readAll(reader, pool(512));
                assertEquals(0, reader.batchesInParts(), "the short part must send the batch to the one-thread read");
            }
            assertEquals(1, result.chunkShapes().size());
            assertEquals(List.of(s.vm(Region.X, 0, 128).run(), s.vm(Region.X, 128, 256).run()), result.runs());
            assertEquals(LongStream.range(0, 64).mapToObj(i -> s.page(Region.A, i)).toList(), stats.vanishedAddresses());
            assertEquals(384, stats.pagesRead());
            assertEquals(384L * PAGE, result.bytes().length);
        }
    }

    @Test
    void withTwoThreadsPagesVanishedInALaterChunkAreSkippedAndTheBatchesAfterThemAreReadInPartsAgain() throws Exception {
        try (SampleProcess sample = SampleProcess.start(8, false)) {
            LiveReadSupport s = new LiveReadSupport(sample);
            // chunk 1: X 0..511; chunk 2: A (gone by then) + X 512..959, topped up with X 1024..1087;
            // chunk 3: X 1088..1535
            List<PlannedRun> runs = List.of(s.vm(Region.X, 0, 512), s.vm(Region.A, 0, 64), s.vm(Region.X, 512, 448),
                    s.vm(Region.X, 1024, 512));
            BufferPool p = pool(512);
            try (LiveChunkReader reader = new LiveChunkReader(runs.iterator(), sample.pid(), ReadOptions.MAX_IOVECS,
                    stats, 2)) {
                PageChunk first = nextChunk(reader, p);
                try {
                    assertEquals(List.of(s.vm(Region.X, 0, 512).run()), first.runs());
                } finally {
                    first.release();
                }
                assertEquals(1, reader.batchesInParts());
                sample.unmapA();
                LiveReadSupport.Result rest = s.readAll(reader, p, 1);
                assertEquals(2, rest.chunkShapes().size());
                assertEquals(List.of(s.vm(Region.X, 512, 448).run(), s.vm(Region.X, 1024, 64).run()),
                        rest.chunkShapes().get(0).runs());
                assertEquals(List.of(s.vm(Region.X, 1088, 448).run()), rest.chunkShapes().get(1).runs());
                assertEquals(2, reader.batchesInParts(), "chunk 3 must be read in parts again after chunk 2's fallback");
            }
            assertEquals(LongStream.range(0, 64).mapToObj(i -> s.page(Region.A, i)).toList(), stats.vanishedAddresses());
            assertEquals(512 + 448 + 512, stats.pagesRead());
        }
    }

    @Test
    void targetKilledBetweenParallelBatchesFailsWithProcessGoneNamingPidAndAddress() throws Exception {
        try (SampleProcess sample = SampleProcess.start(8, false)) {
            LiveReadSupport s = new LiveReadSupport(sample);
            BufferPool p = pool(512);
            try (LiveChunkReader reader = new LiveChunkReader(List.of(s.vm(Region.X, 0, 2048)).iterator(),
                    sample.pid(), ReadOptions.MAX_IOVECS, stats, 2)) {
                nextChunk(reader, p).release();
                sample.kill();
                ProcessGoneException e = assertThrows(ProcessGoneException.class, () -> nextChunk(reader, p));
                assertEquals(sample.pid(), e.pid());
                assertTrue(e.getMessage().contains(String.format("while reading address=0x%x", s.page(Region.X, 512))),
                        e.getMessage());
                assertTrue(e.getMessage().contains("errno=ESRCH"), e.getMessage());
                assertEquals(1, reader.batchesInParts());
            }
            assertEquals(0, stats.pagesVanished());
        }
    }

    @Test
    void aStreamReadWithTwoThreadsEmitsItsChunksInOrderWithinTheBudget() throws Exception {
        try (SampleProcess sample = SampleProcess.start(8, false)) {
            LiveReadSupport s = new LiveReadSupport(sample);
            List<PlannedRun> runs = bulkRuns(s);
            BufferPool p = pool(512); // room for 2 chunks of 2 MiB
            List<Long> sequences = new ArrayList<>();
            List<PageRun> read = new ArrayList<>();
            java.util.Map<Long, byte[]> pages = new java.util.HashMap<>();
            java.io.ByteArrayOutputStream bytes = new java.io.ByteArrayOutputStream();
            LiveChunkReader[] made = new LiveChunkReader[1];
            ChunkStream.from(() -> made[0] = new LiveChunkReader(runs.iterator(), sample.pid(), ReadOptions.MAX_IOVECS,
                            stats, 2), p, reactor.core.scheduler.Schedulers.boundedElastic())
                    .doOnNext(chunk -> {
                        try {
                            sequences.add(chunk.sequence());
                            s.check(chunk, read, pages, bytes);
                        } finally {
                            chunk.release();
                        }
                    })
                    .blockLast(java.time.Duration.ofSeconds(30));
            assertEquals(LongStream.range(0, sequences.size()).boxed().toList(), sequences);
            assertEquals(merged(plain(runs)), merged(read));
            assertTrue(made[0].batchesInParts() >= 2, "batches read in parts: " + made[0].batchesInParts());
            assertEquals(LiveReadSupport.pages(runs) * PAGE, bytes.size());
        }
    }

    @Test
    void closeStopsTheHelperThreads() throws Exception {
        try (SampleProcess sample = SampleProcess.start(8, false)) {
            LiveReadSupport s = new LiveReadSupport(sample);
            String prefix = "pageflux-read-" + sample.pid() + "-";
            LiveChunkReader reader = new LiveChunkReader(List.of(s.vm(Region.X, 0, 512)).iterator(), sample.pid(),
                    ReadOptions.MAX_IOVECS, stats, 3);
            s.readAll(reader, pool(512));
            assertEquals(2, helperThreads(prefix), "two helpers for three read threads");
            reader.close();
            // close wakes the idle helpers, which then exit: this ends at once
            for (int i = 0; i < 500 && helperThreads(prefix) > 0; i++) {
                Thread.sleep(10);
            }
            assertEquals(0, helperThreads(prefix), "helpers still alive after close");
        }
    }

    private static long helperThreads(String prefix) {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().startsWith(prefix) && t.isAlive()).count();
    }

    @Test
    void rejectsReadThreadsOutsideOneToSixteen() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new LiveChunkReader(List.<PlannedRun>of().iterator(), 1, 8, stats, 17));
        assertEquals("readThreads must be 1..16: 17", e.getMessage());
        assertThrows(IllegalArgumentException.class,
                () -> new LiveChunkReader(List.<PlannedRun>of().iterator(), 1, 8, stats, 0));
    }

    private byte[] readAllBytes(LiveReadSupport s, LiveChunkReader reader, int chunkPages) throws Exception {
        BufferPool p = pool(chunkPages);
        byte[] bytes = s.readAll(reader, p).bytes();
        assertEquals(0, p.leasedBuffers());
        return bytes;
    }

    @Test
    void pagesOfARegionUnmappedMidReadVanishAndEverythingElseIsRead() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            List<PlannedRun> runs = new ArrayList<>();
            runs.add(s.vm(Region.A, 0, 64));
            for (int p = 0; p < 32; p += 2) {
                runs.add(s.vm(Region.B, p, 1));
            }
            runs.add(s.mem(Region.C, 0, 16));
            runs.add(s.vm(Region.D, 0, 8));
            BufferPool p = pool(4);
            List<Long> read = new ArrayList<>();
            try (LiveChunkReader reader = reader(sample, runs, ReadOptions.MAX_IOVECS)) {
                PageChunk first = nextChunk(reader, p);
                try {
                    assertEquals(List.of(s.vm(Region.A, 0, 4).run()), first.runs());
                } finally {
                    first.release();
                }
                sample.unmapA();
                LiveReadSupport.Result rest = s.readAll(reader, p, 1);
                read.addAll(rest.addresses());
                // no chunk is empty (readAll checks) and each holds whole pages of B, C, D only
                for (long address : read) {
                    assertFalse(address >= s.page(Region.A, 0) && address < s.page(Region.A, 64),
                            String.format("A page 0x%x was read after A was unmapped", address));
                }
            }
            List<Long> expectedVanished = LongStream.range(4, 64).mapToObj(i -> s.page(Region.A, i)).toList();
            assertEquals(60, stats.pagesVanished());
            assertEquals(expectedVanished, stats.vanishedAddresses());
            assertEquals(16 + 16 + 8, read.size(), "every B-even, C and D page was read");
            assertEquals(4 + 16 + 16 + 8, stats.pagesRead());
        }
    }

    @Test
    void anUnreadablePageInsideOneRunSplitsTheRunAroundIt() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            // B, C (PROT_NONE) and D are adjacent in the sample: one run from B30 to D1 crosses all three
            org.junit.jupiter.api.Assumptions.assumeTrue(
                    s.page(Region.B, 32) == s.page(Region.C, 0) && s.page(Region.C, 16) == s.page(Region.D, 0),
                    "the kernel did not place B, C, D next to each other: " + sample);
            PageRun across = new PageRun(s.page(Region.B, 30), 20, PagemapId.task(sample.pid()), s.page(Region.B, 30),
                    PageFlags.PE_PRESENT);
            List<PlannedRun> runs = List.of(new PlannedRun(across, RegionDecision.ReadVia.PROCESS_VM_READV),
                    s.vm(Region.A, 0, 2));
            LiveReadSupport.Result result;
            try (LiveChunkReader reader = reader(sample, runs, ReadOptions.MAX_IOVECS)) {
                result = s.readAll(reader, pool(64));
            }
            // B30 (0xBE), B31 (the zero page), then D0, D1: the run is cut around C's 16 pages
            assertEquals(List.of(across.slice(0, 2), across.slice(18, 2), s.vm(Region.A, 0, 2).run()),
                    result.chunkShapes().get(0).runs());
            assertEquals(1, result.chunkShapes().size());
            assertEquals(LongStream.range(0, 16).mapToObj(i -> s.page(Region.C, i)).toList(), stats.vanishedAddresses());
            assertEquals(6, stats.pagesRead());
        }
    }

    @Test
    void vanishedRunsBetweenGoodRunsOfOneBatchAreSkipped() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            sample.unmapA();
            List<PlannedRun> runs = List.of(s.vm(Region.B, 0, 1), s.vm(Region.A, 0, 4), s.vm(Region.B, 2, 1),
                    s.vm(Region.A, 10, 1), s.vm(Region.B, 4, 1), s.vm(Region.A, 63, 1));
            LiveReadSupport.Result result;
            try (LiveChunkReader reader = reader(sample, runs, ReadOptions.MAX_IOVECS)) {
                result = s.readAll(reader, pool(16));
            }
            assertEquals(1, result.chunkShapes().size());
            assertEquals(List.of(s.vm(Region.B, 0, 1).run(), s.vm(Region.B, 2, 1).run(), s.vm(Region.B, 4, 1).run()),
                    result.runs());
            assertEquals(Stream.of(0, 1, 2, 3, 10, 63).map(i -> s.page(Region.A, i)).toList(),
                    stats.vanishedAddresses());
        }
    }

    @Test
    void whenEveryPlannedPageVanishedThereIsNoChunkAtAll() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            sample.unmapA();
            BufferPool p = pool(4);
            try (LiveChunkReader reader = reader(sample, List.of(s.vm(Region.A, 0, 64), s.mem(Region.A, 0, 8)),
                    ReadOptions.MAX_IOVECS)) {
                assertNull(nextChunk(reader, p));
            }
            assertEquals(72, stats.pagesVanished());
            assertEquals(0, stats.chunksRead());
        }
    }

    @Test
    void aChunkWhosePagesVanishedIsFilledFromTheFollowingRuns() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            sample.unmapA();
            LiveReadSupport.Result result;
            try (LiveChunkReader reader = reader(sample,
                    List.of(s.mem(Region.A, 0, 8), s.vm(Region.A, 8, 8), s.vm(Region.D, 0, 8)), ReadOptions.MAX_IOVECS)) {
                result = s.readAll(reader, pool(4));
            }
            // D's 8 pages fill two full chunks; A's 16 pages (read both ways) vanished
            assertEquals(List.of(s.vm(Region.D, 0, 4).run(), s.vm(Region.D, 4, 4).run()), result.runs());
            assertEquals(2, result.chunkShapes().size());
            assertEquals(LongStream.range(0, 16).mapToObj(i -> s.page(Region.A, i)).toList(), stats.vanishedAddresses());
        }
    }

    @Test
    void targetKilledMidReadFailsWithProcessGoneNamingPidAndAddress() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            BufferPool p = pool(4);
            try (LiveChunkReader reader = reader(sample, List.of(s.vm(Region.A, 0, 64)), ReadOptions.MAX_IOVECS)) {
                nextChunk(reader, p).release();
                sample.kill();
                ProcessGoneException e = assertThrows(ProcessGoneException.class, () -> nextChunk(reader, p));
                assertEquals(sample.pid(), e.pid());
                assertTrue(e.getMessage().contains("pid=" + sample.pid()), e.getMessage());
                assertTrue(e.getMessage().contains(String.format("while reading address=0x%x", s.page(Region.A, 4))),
                        e.getMessage());
                assertTrue(e.getMessage().contains("errno=ESRCH"), e.getMessage());
            }
            assertEquals(0, stats.pagesVanished(), "pages of a dead process are not 'vanished'");
        }
    }

    @Test
    void targetKilledWhileReadingThroughProcMemFailsWithProcessGone() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            BufferPool p = pool(4);
            try (LiveChunkReader reader = reader(sample, List.of(s.mem(Region.C, 0, 16)), ReadOptions.MAX_IOVECS)) {
                nextChunk(reader, p).release();
                sample.kill();
                // the descriptor is still open; the kernel now answers 0 bytes, which must not pass as "vanished"
                ProcessGoneException e = assertThrows(ProcessGoneException.class, () -> nextChunk(reader, p));
                assertEquals(sample.pid(), e.pid());
                assertTrue(e.getMessage().contains(String.format("address=0x%x", s.page(Region.C, 4))), e.getMessage());
            }
            assertEquals(0, stats.pagesVanished());
        }
    }

    @Test
    void closeReleasesTheProcMemDescriptorAndClosesTheRunSource() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            String memPath = "/proc/" + sample.pid() + "/mem";
            ClosingIterator runs = new ClosingIterator(List.of(s.mem(Region.C, 0, 16)).iterator());
            LiveChunkReader reader = new LiveChunkReader(runs, sample.pid(), 8, stats);
            s.readAll(reader, pool(64));
            assertEquals(1, openDescriptorsTo(memPath));
            reader.close();
            reader.close();
            assertEquals(0, openDescriptorsTo(memPath));
            assertEquals(1, runs.closed, "closed once, even when the reader is closed twice");
            assertThrows(IllegalStateException.class, () -> nextChunk(reader, pool));
        }
    }

    @Test
    void exhaustedTurnsTrueExactlyAfterTheLastRunWasRead() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            BufferPool p = pool(4);
            try (LiveChunkReader reader = reader(sample, List.of(s.vm(Region.D, 0, 6)), ReadOptions.MAX_IOVECS)) {
                assertFalse(reader.exhausted());
                nextChunk(reader, p).release();
                assertFalse(reader.exhausted(), "2 pages of D are left");
                nextChunk(reader, p).release();
                assertTrue(reader.exhausted());
                assertNull(nextChunk(reader, p));
            }
        }
    }

    @Test
    void aScanFailureSeenByExhaustedIsThrownByTheNextRead() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            IllegalStateException failure = new IllegalStateException("scan failed: pid=" + sample.pid());
            Iterator<PlannedRun> broken = new Iterator<>() {
                @Override
                public boolean hasNext() {
                    throw failure;
                }

                @Override
                public PlannedRun next() {
                    throw new AssertionError("hasNext failed");
                }
            };
            BufferPool p = pool(4);
            try (LiveChunkReader reader = new LiveChunkReader(broken, sample.pid(), 4, stats)) {
                assertFalse(reader.exhausted(), "exhausted() must not throw: the stream calls it outside its error handling");
                assertEquals(failure, assertThrows(IllegalStateException.class, () -> nextChunk(reader, p)));
            }
        }
    }

    @Test
    void rejectsRunsPerReadOutsideOneToIovMax() {
        assertThrows(IllegalArgumentException.class,
                () -> new LiveChunkReader(List.<PlannedRun>of().iterator(), 1, 0, stats));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new LiveChunkReader(List.<PlannedRun>of().iterator(), 1, 1025, stats));
        assertTrue(e.getMessage().contains("1025"), e.getMessage());
    }

    private static long openDescriptorsTo(String target) throws IOException {
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            return fds.filter(fd -> {
                try {
                    return Files.readSymbolicLink(fd).toString().equals(target);
                } catch (IOException e) {
                    return false; // the descriptor of the listing itself, already closed
                }
            }).count();
        }
    }

    private static final class ClosingIterator implements Iterator<PlannedRun>, AutoCloseable {
        private final Iterator<PlannedRun> delegate;
        int closed;

        ClosingIterator(Iterator<PlannedRun> delegate) {
            this.delegate = delegate;
        }

        @Override
        public boolean hasNext() {
            return delegate.hasNext();
        }

        @Override
        public PlannedRun next() {
            return delegate.next();
        }

        @Override
        public void close() {
            closed++;
        }
    }
}
