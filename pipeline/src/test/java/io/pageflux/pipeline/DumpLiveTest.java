package io.pageflux.pipeline;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.nativeio.HugePageBuffers;
import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.SinkResult;
import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.source.DataSize;
import io.pageflux.source.LiveProcess;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Dumps of a real sample process through the whole stack: LiveProcess (reader), the CRIU region
 * presets and page scan (scanner), CriuImageSink / ImageDirectory / tee (images).
 */
class DumpLiveTest {

    private static final int PAGE = PageRun.PAGE_SIZE;

    @TempDir
    Path tmp;

    @Test
    void fullDumpHoldsExactlyThePolicysPagesWithTheRightBytes() throws Exception {
        Path out = tmp.resolve("full");
        try (SampleProcess sample = SampleProcess.start()) {
            LiveProcess live = LiveProcess.attach(sample.pid());
            List<MemoryRegion> regions = live.regions();
            DumpReport report = Dump.of(live).budget(DataSize.ofKibibytes(256)).chunkSize(DataSize.ofKibibytes(64))
                    .to(PageSinks.criuImages(out)).run().block(Duration.ofSeconds(30));

            ImageDirectory images = ImageDirectory.open(out).verify();
            Map<Long, byte[]> task = pages(images, PagemapId.task(sample.pid()));
            long dInode = regionAt(regions, sample.address(Region.D)).inode();
            Map<Long, byte[]> shmem = pages(images, PagemapId.shmem(dInode));

            assertRegion(sample, task, Region.A, p -> true);
            assertRegion(sample, task, Region.B, p -> p % 2 == 0);
            assertRegion(sample, task, Region.C, p -> true);
            assertRegion(sample, task, Region.D, p -> false);
            assertRegion(sample, task, Region.E, p -> false);
            // D lives in pagemap-shmem-<inode>.img at offsets inside the object
            assertEquals(8, shmem.size(), "pagemap-shmem-" + dInode + ".img");
            for (int p = 0; p < 8; p++) {
                assertArrayEquals(SampleProcess.expectedPage(Region.D, p), shmem.get((long) p * PAGE), "D page " + p);
            }
            // every other dumped page equals the live memory, read independently via /proc/PID/mem
            assertAllEqualLive(sample.pid(), task);

            long total = task.size() + shmem.size();
            assertEquals(total, images.presentPages());
            assertEquals(sample.pid(), report.pid());
            assertFalse(report.preDump());
            assertEquals(total, report.pagesDumped());
            assertEquals(total * PAGE, report.bytesDumped());
            assertEquals(total, report.pagesPlanned());
            assertEquals(0, report.pagesVanished());
            assertEquals(regions.size(), report.regionsSeen());
            assertEquals(report.regionsSeen(), report.regionsDumped() + report.regionsSkippedTotal());
            assertTrue(report.regionsSkipped().keySet().stream().anyMatch(k -> k.contains("[vvar]")),
                    report.regionsSkipped().toString());
            assertTrue(report.runs() >= images.entries() - 1, report + " vs " + images.entries());
            assertEquals(4, report.poolCapacity());
            assertTrue(report.peakBuffersLeased() >= 1 && report.peakBuffersLeased() <= 4, report.toString());
            assertTrue(report.chunks() >= total * PAGE / (64 * 1024), report.toString());
            assertEquals(1, report.sinks().size());
            SinkResult sink = report.sinks().get(0);
            assertEquals("dir:" + out, sink.description());
            assertEquals(total, sink.pages());
            assertEquals(images.entries(), sink.entries());
        }
    }

    /**
     * Pool buffers of 4 MiB are huge-page mappings, which no GC is triggered for: a dump that left
     * them to the GC would leave its budget mapped, run after run, in a warm JVM ({@code migrate},
     * library users). Each run must give back what it mapped, however it ends, with no GC.
     */
    @Test
    void manyDumpsInOneJvmUnmapTheirBuffersWhenEachRunEnds() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveProcess live = LiveProcess.attach(sample.pid());
            Dump dump = Dump.of(live).budget(DataSize.ofMebibytes(16)).chunkSize(DataSize.ofMebibytes(4));
            long before = HugePageBuffers.mappedBytes();
            for (int i = 0; i < 6; i++) {
                PageSink sink = i % 2 == 0 ? PageSinks.nullSink() : PageSinks.criuImages(tmp.resolve("run-" + i));
                DumpReport report = dump.to(sink).run().block(Duration.ofSeconds(30));
                // a buffer was leased, so a 2 MiB-multiple mapping existed during the run
                assertTrue(report.peakBuffersLeased() >= 1, report.toString());
                assertEquals(before, HugePageBuffers.mappedBytes(), "mapped bytes after run " + i + " (" + sink.describe() + ")");
            }
            // a run that fails in its sink gives its buffers back too
            PageSink failing = new PageSink() {
                @Override
                public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
                    return chunks.concatMap(c -> {
                        c.release();
                        return Mono.error(new IllegalStateException("sink failed"));
                    }).then(Mono.empty());
                }

                @Override
                public String describe() {
                    return "failing";
                }
            };
            assertThrows(IllegalStateException.class, () -> dump.to(failing).run().block(Duration.ofSeconds(30)));
            assertEquals(before, HugePageBuffers.mappedBytes(), "mapped bytes after a failed run");
        }
    }

    @Test
    void preDumpLeavesOutProtNoneAndWritesAPreDumpInventory() throws Exception {
        Path out = tmp.resolve("pre");
        try (SampleProcess sample = SampleProcess.start()) {
            DumpReport report = Dump.of(LiveProcess.attach(sample.pid())).preDump(true)
                    .to(PageSinks.criuImages(out)).run().block(Duration.ofSeconds(30));

            ImageDirectory images = ImageDirectory.open(out).verify();
            Map<Long, byte[]> task = pages(images, PagemapId.task(sample.pid()));
            assertRegion(sample, task, Region.A, p -> true);
            assertRegion(sample, task, Region.B, p -> p % 2 == 0);
            assertRegion(sample, task, Region.C, p -> false);
            assertRegion(sample, task, Region.E, p -> false);
            assertTrue(report.preDump());
            assertEquals(images.presentPages(), report.pagesDumped());
            assertEquals(0, images.inventory().orElseThrow().imgVersion());
            assertEquals(2, images.inventory().orElseThrow().preDumpMode().orElseThrow());
        }
    }

    @Test
    void teeWritesImagesAndReportsEachSink() throws Exception {
        Path out = tmp.resolve("tee");
        try (SampleProcess sample = SampleProcess.start()) {
            DumpReport report = Dump.of(LiveProcess.attach(sample.pid())).budget(DataSize.ofKibibytes(128))
                    .chunkSize(DataSize.ofKibibytes(32)).to(PageSinks.criuImages(out), PageSinks.nullSink())
                    .run().block(Duration.ofSeconds(30));

            ImageDirectory images = ImageDirectory.open(out).verify();
            assertEquals(2, report.sinks().size());
            assertEquals("dir:" + out, report.sinks().get(0).description());
            assertEquals(images.presentPages(), report.sinks().get(0).pages());
            assertEquals(images.presentPages(), report.sinks().get(1).pages());
            assertEquals(images.presentPages(), report.pagesDumped());
            assertRegion(sample, pages(images, PagemapId.task(sample.pid())), Region.A, p -> true);
        }
    }

    @Test
    void killedTargetFailsWithProcessGoneAndLeavesNoDirectory() throws Exception {
        Path out = tmp.resolve("killed");
        try (SampleProcess sample = SampleProcess.start(256, false)) {
            AtomicBoolean first = new AtomicBoolean(true);
            PageSink images = PageSinks.criuImages(out);
            // a slow disk: each chunk waits 20 ms; the target dies once the first chunk is here
            PageSink slow = new PageSink() {
                @Override
                public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
                    return images.write(context, chunks.concatMap(c -> {
                        if (first.compareAndSet(true, false)) {
                            sample.kill();
                        }
                        return Mono.just(c).delayElement(Duration.ofMillis(20));
                    }, 1));
                }

                @Override
                public String describe() {
                    return images.describe();
                }
            };
            Dump dump = Dump.of(LiveProcess.attach(sample.pid())).budget(DataSize.ofMebibytes(2))
                    .chunkSize(DataSize.ofMebibytes(1)).to(slow);

            ProcessGoneException e = assertThrows(ProcessGoneException.class,
                    () -> dump.run().block(Duration.ofSeconds(30)));

            assertEquals(sample.pid(), e.pid());
            assertTrue(e.getMessage().contains("pid=" + sample.pid()), e.getMessage());
            assertFalse(sample.isAlive());
        }
        assertFalse(Files.exists(out), "a killed dump left its directory");
        try (Stream<Path> left = Files.list(tmp)) {
            assertEquals(List.of(), left.toList(), "a killed dump left temporary output");
        }
    }

    // ---- helpers ------------------------------------------------------------------------------

    interface PagePredicate {
        boolean dumped(int page);
    }

    private static void assertRegion(SampleProcess sample, Map<Long, byte[]> dumped, Region region,
                                     PagePredicate expected) {
        long base = sample.address(region);
        for (int p = 0; p < region.pages(); p++) {
            byte[] page = dumped.get(base + (long) p * PAGE);
            if (expected.dumped(p)) {
                assertTrue(page != null, "region " + region + " page " + p + " missing");
                assertArrayEquals(SampleProcess.expectedPage(region, p), page, "region " + region + " page " + p);
            } else {
                assertTrue(page == null, "region " + region + " page " + p + " must not be dumped");
            }
        }
    }

    /** Every present page of one pagemap, by its vaddr. */
    private static Map<Long, byte[]> pages(ImageDirectory images, PagemapId id) throws Exception {
        PagemapImage pm = images.pagemap(id).orElseThrow(() -> new AssertionError("no " + id + " in " + images));
        Map<Long, byte[]> out = new HashMap<>();
        for (PagemapImage.Entry e : pm.entries()) {
            if (!e.present()) {
                continue;
            }
            ByteBuffer bytes = images.readPages(pm, e);
            for (long p = 0; p < e.nrPages(); p++) {
                byte[] page = new byte[PAGE];
                bytes.get(page);
                assertEquals(null, out.put(e.vaddr() + p * PAGE, page), "page twice");
            }
        }
        return out;
    }

    private static void assertAllEqualLive(int pid, Map<Long, byte[]> dumped) throws Exception {
        try (FileChannel mem = FileChannel.open(Path.of("/proc/" + pid + "/mem"), StandardOpenOption.READ)) {
            for (Map.Entry<Long, byte[]> e : dumped.entrySet()) {
                ByteBuffer live = ByteBuffer.allocate(PAGE);
                while (live.hasRemaining()) {
                    assertTrue(mem.read(live, e.getKey() + live.position()) > 0);
                }
                assertArrayEquals(live.array(), e.getValue(), String.format("page 0x%x", e.getKey()));
            }
        }
    }

    private static MemoryRegion regionAt(List<MemoryRegion> regions, long address) {
        return regions.stream().filter(r -> r.contains(address)).findFirst()
                .orElseThrow(() -> new AssertionError(String.format("no region at 0x%x", address)));
    }
}
