package io.pageflux.source;

import static io.pageflux.source.LiveReadSupport.PAGE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BooleanSupplier;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;
import reactor.test.StepVerifier;

/** {@link LiveChunkReader} behind {@link ChunkStream}: demand, cancel and errors leave no buffer leased. */
class LiveChunkReaderStreamTest {

    private final Scheduler scheduler = Schedulers.newSingle("live-read-test");
    private final BufferPool pool = BufferPool.create(DataSize.ofKibibytes(32), DataSize.ofKibibytes(16));
    private final DumpStats stats = new DumpStats();

    @AfterEach
    void tearDown() {
        scheduler.dispose();
        assertEquals(0, pool.leasedBuffers(), "buffers still leased: " + pool);
    }

    private Flux<PageChunk> stream(SampleProcess sample, List<PlannedRun> runs) {
        return ChunkStream.from(() -> new LiveChunkReader(runs.iterator(), sample.pid(), ReadOptions.MAX_IOVECS, stats),
                pool, scheduler);
    }

    @Test
    void streamsEveryPlannedPageWithinATwoBufferBudget() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            List<PlannedRun> runs = s.fullDumpRuns();
            List<PageRun> seen = new ArrayList<>();
            Map<Long, byte[]> pages = new LinkedHashMap<>();
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            StepVerifier.create(stream(sample, runs).doOnNext(chunk -> {
                        try {
                            s.check(chunk, seen, pages, bytes);
                        } finally {
                            chunk.release();
                        }
                    }), 1)
                    .thenRequest(Long.MAX_VALUE)
                    .expectNextCount((LiveReadSupport.pages(runs) + 3) / 4)
                    .expectComplete()
                    .verify(Duration.ofSeconds(30));
            assertEquals(LiveReadSupport.merged(runs.stream().map(PlannedRun::run).toList()), LiveReadSupport.merged(seen));
            assertEquals(LiveReadSupport.pages(runs) * PAGE, bytes.size());
            assertTrue(pool.peakLeasedBuffers() <= 2);
        }
    }

    @Test
    void cancelReleasesTheBuffersAndClosesTheProcMemDescriptor() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            String memPath = "/proc/" + sample.pid() + "/mem";
            List<PlannedRun> runs = List.of(s.mem(Region.C, 0, 16), s.vm(Region.A, 0, 64));
            StepVerifier.create(stream(sample, runs).doOnNext(PageChunk::release), 2)
                    .expectNextCount(2)
                    .then(() -> assertEquals(1, openDescriptorsTo(memPath), "the reader holds /proc/PID/mem open"))
                    .thenCancel()
                    .verify(Duration.ofSeconds(30));
            await(() -> openDescriptorsTo(memPath) == 0, "reader closed after cancel");
            assertEquals(8, stats.pagesRead());
        }
    }

    @Test
    void aTargetKilledMidStreamFailsTheStreamWithProcessGone() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveReadSupport s = new LiveReadSupport(sample);
            List<PlannedRun> runs = List.of(s.vm(Region.A, 0, 64));
            StepVerifier.create(stream(sample, runs), 1)
                    .consumeNextWith(PageChunk::release)
                    .then(sample::kill)
                    .thenRequest(10)
                    .expectErrorSatisfies(e -> {
                        assertEquals(ProcessGoneException.class, e.getClass());
                        assertEquals(sample.pid(), ((ProcessGoneException) e).pid());
                    })
                    .verify(Duration.ofSeconds(30));
        }
    }

    private static void await(BooleanSupplier condition, String what) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting: " + what);
            }
            Thread.sleep(5);
        }
    }

    private static long openDescriptorsTo(String target) {
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            return fds.filter(fd -> {
                try {
                    return Files.readSymbolicLink(fd).toString().equals(target);
                } catch (IOException e) {
                    return false;
                }
            }).count();
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }
}
