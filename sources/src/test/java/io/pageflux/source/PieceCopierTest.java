package io.pageflux.source;

import static io.pageflux.source.LiveReadSupport.PAGE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** {@link PieceCopier} against a real {@link SampleProcess}: bytes land where one call would put them. */
class PieceCopierTest {

    private static final int CHUNK_PAGES = 512; // 2 MiB: 8 pieces of 256 KiB with 2 threads

    /**
     * Checks that {@code buffer} holds the pages of {@code runs}, back to back, in order. Checked from the last
     * page back: the last segment is a helper's, so a copy that returned before its helpers were done fails here.
     */
    private static void assertHolds(LiveReadSupport s, PooledBuffer buffer, List<PageRun> runs) {
        ByteBuffer data = buffer.buffer();
        List<Long> addresses = new ArrayList<>();
        for (PageRun run : runs) {
            for (long p = 0; p < run.pages(); p++) {
                addresses.add(run.address() + p * PAGE);
            }
        }
        for (int i = addresses.size() - 1; i >= 0; i--) {
            byte[] actual = new byte[PAGE];
            data.get(i * PAGE, actual);
            assertArrayEquals(s.expectedAt(addresses.get(i)), actual,
                    String.format("page 0x%x at offset %d", addresses.get(i), i * PAGE));
        }
    }

    private static long total(List<PageRun> runs) {
        return runs.stream().mapToLong(PageRun::bytes).sum();
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 3, 5})
    void oneHundredTwentyEightRunsOfFourPagesCutIntoPiecesLandWhereOneCallPutsThem(int threads) throws Exception {
        try (SampleProcess sample = SampleProcess.start(8, false);
             PieceCopier copier = new PieceCopier(sample.pid(), threads, ReadOptions.MAX_IOVECS)) {
            LiveReadSupport s = new LiveReadSupport(sample);
            // every other 4-page run of X, descending: pieces cut runs and hold many iovecs each
            List<PageRun> runs = new ArrayList<>();
            for (int p = 1020; p >= 0; p -= 8) {
                runs.add(s.vm(Region.X, p, 4).run());
            }
            assertEquals(CHUNK_PAGES, total(runs) / PAGE);
            BufferPool pool = BufferPool.create(DataSize.ofBytes(CHUNK_PAGES * PAGE), DataSize.ofBytes(CHUNK_PAGES * PAGE));
            PooledBuffer buffer = pool.tryAcquire();
            try {
                assertTrue(copier.copy(runs.toArray(PageRun[]::new), runs.size(), buffer.address(), total(runs)));
                assertHolds(s, buffer, runs);
            } finally {
                buffer.release();
            }
        }
    }

    @Test
    void helpersCopyPiecesAndEveryBatchIsWhole() throws Exception {
        try (SampleProcess sample = SampleProcess.start(8, false);
             PieceCopier copier = new PieceCopier(sample.pid(), 2, ReadOptions.MAX_IOVECS)) {
            LiveReadSupport s = new LiveReadSupport(sample);
            BufferPool pool = BufferPool.create(DataSize.ofBytes(CHUNK_PAGES * PAGE), DataSize.ofBytes(CHUNK_PAGES * PAGE));
            PooledBuffer buffer = pool.tryAcquire();
            try {
                // the helper joins each batch as soon as it sees it; a loaded machine may delay it for a few
                for (int batch = 0; batch < 400 && (batch < 4 || copier.piecesByHelpers() == 0); batch++) {
                    List<PageRun> runs = List.of(s.vm(Region.X, (batch % 4) * CHUNK_PAGES, CHUNK_PAGES).run());
                    buffer.buffer().clear();
                    zero(buffer);
                    assertTrue(copier.copy(runs.toArray(PageRun[]::new), 1, buffer.address(), total(runs)));
                    assertHolds(s, buffer, runs);
                }
                assertTrue(copier.piecesByHelpers() > 0, "the helper never copied a piece");
            } finally {
                buffer.release();
            }
        }
    }

    @Test
    void copyReturnsOnlyWhenASlowHelperHasCopiedItsPieces() throws Exception {
        try (SampleProcess sample = SampleProcess.start(8, false);
             PieceCopier copier = new PieceCopier(sample.pid(), 2, ReadOptions.MAX_IOVECS)) {
            LiveReadSupport s = new LiveReadSupport(sample);
            java.util.concurrent.atomic.AtomicInteger slowed = new java.util.concurrent.atomic.AtomicInteger();
            copier.beforeHelperPiece = () -> {
                slowed.incrementAndGet();
                sleepFully(30); // far longer than the caller's spin before it parks
            };
            BufferPool pool = BufferPool.create(DataSize.ofBytes(CHUNK_PAGES * PAGE), DataSize.ofBytes(CHUNK_PAGES * PAGE));
            PooledBuffer buffer = pool.tryAcquire();
            try {
                for (int batch = 0; batch < 50 && slowed.get() < 3; batch++) {
                    List<PageRun> runs = List.of(s.vm(Region.X, (batch % 4) * CHUNK_PAGES, CHUNK_PAGES).run());
                    zero(buffer);
                    if (batch % 2 == 1) {
                        Thread.currentThread().interrupt(); // a parked caller must not leave early when interrupted
                    }
                    assertTrue(copier.copy(runs.toArray(PageRun[]::new), 1, buffer.address(), total(runs)));
                    assertEquals(batch % 2 == 1, Thread.interrupted(), "the interrupt must be kept, and only it");
                    assertHolds(s, buffer, runs);
                }
                assertTrue(slowed.get() >= 3, "the helper took " + slowed.get() + " pieces in 50 batches");
            } finally {
                Thread.interrupted();
                buffer.release();
            }
        }
    }

    /** Sleeps the whole time, whatever interrupts or spurious wake-ups come. */
    private static void sleepFully(long millis) {
        long end = System.nanoTime() + millis * 1_000_000;
        for (long left = millis * 1_000_000; left > 0; left = end - System.nanoTime()) {
            java.util.concurrent.locks.LockSupport.parkNanos(left);
        }
    }

    @Test
    void aPieceOverAnUnmappedRegionMakesTheBatchShortAndTheOthersAreStillCopied() throws Exception {
        try (SampleProcess sample = SampleProcess.start(8, false);
             PieceCopier copier = new PieceCopier(sample.pid(), 2, ReadOptions.MAX_IOVECS)) {
            LiveReadSupport s = new LiveReadSupport(sample);
            sample.unmapA();
            List<PageRun> runs = List.of(s.vm(Region.X, 0, 448).run(), s.vm(Region.A, 0, 64).run());
            BufferPool pool = BufferPool.create(DataSize.ofBytes(CHUNK_PAGES * PAGE), DataSize.ofBytes(CHUNK_PAGES * PAGE));
            PooledBuffer buffer = pool.tryAcquire();
            try {
                assertFalse(copier.copy(runs.toArray(PageRun[]::new), 2, buffer.address(), total(runs)));
                // the next batch starts clean: one short batch does not mark later ones
                List<PageRun> good = List.of(s.vm(Region.X, 512, CHUNK_PAGES).run());
                assertTrue(copier.copy(good.toArray(PageRun[]::new), 1, buffer.address(), total(good)));
                assertHolds(s, buffer, good);
            } finally {
                buffer.release();
            }
        }
    }

    @Test
    void anInterruptedCallerStillWaitsForEveryPieceAndKeepsTheInterrupt() throws Exception {
        try (SampleProcess sample = SampleProcess.start(8, false);
             PieceCopier copier = new PieceCopier(sample.pid(), 3, ReadOptions.MAX_IOVECS)) {
            LiveReadSupport s = new LiveReadSupport(sample);
            BufferPool pool = BufferPool.create(DataSize.ofBytes(CHUNK_PAGES * PAGE), DataSize.ofBytes(CHUNK_PAGES * PAGE));
            PooledBuffer buffer = pool.tryAcquire();
            try {
                for (int batch = 0; batch < 8; batch++) {
                    List<PageRun> runs = List.of(s.vm(Region.X, (batch % 4) * CHUNK_PAGES, CHUNK_PAGES).run());
                    zero(buffer);
                    Thread.currentThread().interrupt(); // what a cancelled stream's worker may see
                    assertTrue(copier.copy(runs.toArray(PageRun[]::new), 1, buffer.address(), total(runs)));
                    assertTrue(Thread.interrupted(), "the interrupt must be kept for the caller");
                    assertHolds(s, buffer, runs);
                }
            } finally {
                Thread.interrupted();
                buffer.release();
            }
        }
    }

    @Test
    void aClosedCopierRefusesBatchesAndItsHelpersExit() throws Exception {
        try (SampleProcess sample = SampleProcess.start(8, false)) {
            LiveReadSupport s = new LiveReadSupport(sample);
            PieceCopier copier = new PieceCopier(sample.pid(), 3, ReadOptions.MAX_IOVECS);
            BufferPool pool = BufferPool.create(DataSize.ofBytes(CHUNK_PAGES * PAGE), DataSize.ofBytes(CHUNK_PAGES * PAGE));
            PooledBuffer buffer = pool.tryAcquire();
            try {
                PageRun[] runs = {s.vm(Region.X, 0, CHUNK_PAGES).run()};
                assertTrue(copier.copy(runs, 1, buffer.address(), (long) CHUNK_PAGES * PAGE));
                String prefix = "pageflux-read-" + sample.pid() + "-";
                assertEquals(2, helpers(prefix));
                copier.close();
                copier.close();
                for (int i = 0; i < 500 && helpers(prefix) > 0; i++) {
                    Thread.sleep(10);
                }
                assertEquals(0, helpers(prefix), "helpers alive after close");
                IllegalStateException e = assertThrows(IllegalStateException.class,
                        () -> copier.copy(runs, 1, buffer.address(), (long) CHUNK_PAGES * PAGE));
                assertEquals("read threads closed: pid=" + sample.pid() + " (the reader was closed, or its helper threads"
                        + " could not start; read with one thread: --read-threads 1)", e.getMessage());
            } finally {
                buffer.release();
            }
        }
    }

    @Test
    void rejectsFewerThanTwoThreads() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new PieceCopier(1, 1, 8));
        assertEquals("a piece copier needs at least 2 threads: threads=1", e.getMessage());
    }

    private static long helpers(String prefix) {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().startsWith(prefix) && t.isAlive()).count();
    }

    private static void zero(PooledBuffer buffer) {
        ByteBuffer data = buffer.buffer();
        for (int i = 0; i < data.capacity(); i += 8) {
            data.putLong(i, 0);
        }
    }
}
