package io.pageflux.sink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.criu.Vectors;
import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.PageChunk;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

class TeeSinkTest {

    @TempDir
    Path tmp;

    /**
     * Holds each chunk for a millisecond before counting and releasing it (the slow one); one
     * chunk at a time, one queued. {@code Mono.using} releases a chunk also when cancelled mid-delay.
     */
    static final class SlowSink implements PageSink {
        final AtomicLong pages = new AtomicLong();
        final AtomicLong firstBytes = new AtomicLong();

        @Override
        public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
            return chunks
                    .concatMap(chunk -> Mono.using(() -> chunk,
                            c -> Mono.delay(Duration.ofMillis(1)).doOnNext(t -> {
                                pages.addAndGet(c.pages());
                                firstBytes.addAndGet(c.data().get(0) & 0xff);
                            }),
                            PageChunk::release), 1)
                    .doOnDiscard(PageChunk.class, PageChunk::release)
                    .then(Mono.fromCallable(() -> new SinkResult(describe(), pages.get(), 7, 1)));
        }

        @Override
        public String describe() {
            return "slow";
        }
    }

    /** Fails at its fourth chunk. */
    static final class FailingSink implements PageSink {
        @Override
        public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
            AtomicLong seen = new AtomicLong();
            return chunks
                    .doOnNext(c -> {
                        c.release();
                        if (seen.getAndIncrement() == 3) {
                            throw new IllegalStateException("sink failed on purpose at chunk=3");
                        }
                    })
                    .doOnDiscard(PageChunk.class, PageChunk::release)
                    .then(Mono.fromCallable(() -> new SinkResult(describe(), 0, 0, 0)));
        }

        @Override
        public String describe() {
            return "failing";
        }
    }

    private static DumpContext context() throws IOException {
        return new DumpContext(Vectors.PID, Vectors.maps(), 1, false, Optional.empty());
    }

    private List<String> listing(Path dir) {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @Test
    void slowestSinkSetsThePaceAndEverythingIsReleased() throws IOException {
        // 16 buffers of one page: without pacing the reader would fill them all ahead of the slow sink
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(64), DataSize.ofKibibytes(4));
        Path out = tmp.resolve("dump");
        SlowSink slow = new SlowSink();
        SinkResult result = PageSinks.tee(PageSinks.criuImages(out), slow, PageSinks.nullSink())
                .write(context(), TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool))
                .block();

        assertEquals(0, pool.leasedBuffers());
        // one buffer per page, each read once and shared by the sinks, + the read that found the end
        assertEquals(119 + 1, pool.acquisitions());
        assertTrue(pool.peakLeasedBuffers() <= 4, "in flight: " + pool.peakLeasedBuffers());
        assertEquals(119, slow.pages.get());
        assertEquals(119, result.pages());
        assertEquals("tee(dir:" + out + ", slow, null)", result.description());
        long dirBytes = listing(out).stream().mapToLong(f -> out.resolve(f).toFile().length()).sum();
        assertEquals(dirBytes + 7 + 119 * 4096, result.bytesWritten());
        assertEquals(25 + 1 + 27 + (119 - 27), result.entries() - 0, "dir entries + slow's 1 + null's runs");
        assertArrayEquals(Files.readAllBytes(Vectors.dir("full-dump").resolve("pages-2.img")),
                Files.readAllBytes(out.resolve("pages-2.img")));
    }

    @Test
    void oneFailingSinkFailsAllAndReleasesEverything() throws IOException {
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(64), DataSize.ofKibibytes(4));
        Path out = tmp.resolve("dump");
        SlowSink slow = new SlowSink();
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> PageSinks
                .tee(PageSinks.criuImages(out), new FailingSink(), slow)
                .write(context(), TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool))
                .block());
        assertEquals("sink failed on purpose at chunk=3", e.getMessage());
        TestChunks.awaitUnchecked(() -> pool.leasedBuffers() == 0, "all buffers back");
        assertTrue(pool.acquisitions() < 119, "upstream was cancelled: " + pool.acquisitions());
        TestChunks.awaitUnchecked(() -> listing(tmp).isEmpty(), "the directory sink aborted");
        assertFalse(Files.exists(out));
    }

    @Test
    void cancellingTheTeeReleasesEverything() throws Exception {
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(64), DataSize.ofKibibytes(4));
        Path out = tmp.resolve("dump");
        SlowSink slow = new SlowSink();
        Disposable d = PageSinks.tee(PageSinks.criuImages(out), slow)
                .write(context(), TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool))
                .subscribe(r -> { }, err -> { });
        TestChunks.await(() -> slow.pages.get() >= 5, "a few chunks through");
        d.dispose();
        TestChunks.await(() -> pool.leasedBuffers() == 0, "all buffers back");
        TestChunks.await(() -> listing(tmp).isEmpty(), "the directory sink aborted");
        assertTrue(pool.acquisitions() < 119, "upstream was cancelled: " + pool.acquisitions());
    }

    @Test
    void nullSinkCountsAndReleases() throws IOException {
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(64), DataSize.ofKibibytes(16));
        SinkResult r = PageSinks.nullSink()
                .write(context(), TestChunks.stream(Vectors.runs(Vectors.dir("full-dump"), 0), pool))
                .block();
        assertEquals(119, r.pages());
        assertEquals(119 * 4096, r.bytesWritten());
        assertEquals("null", r.description());
        assertEquals(0, pool.leasedBuffers());
        assertEquals(30 + 1, pool.acquisitions(), "119 pages in 4-page chunks + the read that found the end");
    }

    @Test
    void aTeeNeedsASink() {
        assertThrows(IllegalArgumentException.class, PageSinks::tee);
    }
}
