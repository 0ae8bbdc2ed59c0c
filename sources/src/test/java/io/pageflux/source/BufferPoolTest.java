package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.nativeio.HugePageBuffers;
import io.pageflux.source.PoolSample.Event;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.test.scheduler.VirtualTimeScheduler;

class BufferPoolTest {

    private static final DataSize CHUNK = DataSize.ofKibibytes(64);

    @Test
    void buffersArePageAlignedAndExactlyOneChunkLong() {
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(16), DataSize.ofMebibytes(4));
        List<PooledBuffer> leased = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            PooledBuffer buffer = pool.tryAcquire();
            assertEquals(0, buffer.address() % 4096, "buffer " + i + " at 0x" + Long.toHexString(buffer.address()));
            assertEquals(4 << 20, buffer.capacity());
            assertEquals(4 << 20, buffer.buffer().remaining());
            leased.add(buffer);
        }
        leased.forEach(PooledBuffer::release);
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void chunksOfWholeHugePagesAreHugePageAlignedOthersPageAligned() {
        BufferPool huge = BufferPool.create(DataSize.ofMebibytes(8), DataSize.ofMebibytes(4));
        PooledBuffer h = huge.tryAcquire();
        assertEquals(0, h.address() % (2 << 20), "4 MiB chunk at 0x" + Long.toHexString(h.address()));
        assertEquals(0, h.buffer().get((4 << 20) - 1), "zeroed");
        h.release();
        huge.close();
        assertFalse(HugePageBuffers.isMapped(h.address()), "a closed pool keeps no huge-page buffer mapped");
        BufferPool small = BufferPool.create(DataSize.ofMebibytes(3), DataSize.ofKibibytes(1536));
        PooledBuffer s = small.tryAcquire();
        assertEquals(0, s.address() % 4096, "1.5 MiB chunk at 0x" + Long.toHexString(s.address()));
        assertEquals(1536 << 10, s.buffer().remaining());
        s.release();
    }

    @Test
    void leasesAtMostTheBudgetAndReusesBuffers() {
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(256), CHUNK);
        assertEquals(4, pool.capacity());
        assertEquals(64 * 1024, pool.chunkSize());
        List<PooledBuffer> held = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            PooledBuffer b = pool.tryAcquire();
            assertNotNull(b, "buffer " + i);
            assertEquals(64 * 1024, b.capacity());
            assertTrue(b.buffer().isDirect());
            held.add(b);
        }
        assertNull(pool.tryAcquire(), "a fifth buffer would exceed the budget");
        assertEquals(4, pool.leasedBuffers());
        assertEquals(256 * 1024, pool.leasedBytes());

        PooledBuffer first = held.get(0);
        first.release();
        assertEquals(3, pool.leasedBuffers());
        PooledBuffer again = pool.tryAcquire();
        assertSame(first, again, "the returned buffer is reused, not a new allocation");
        assertEquals(4, pool.allocatedBuffers());
        assertEquals(5, pool.acquisitions());
        assertEquals(4, pool.peakLeasedBuffers());
        assertEquals(256 * 1024, pool.peakLeasedBytes());
        again.release();
        held.subList(1, 4).forEach(PooledBuffer::release);
        assertEquals(0, pool.leasedBuffers());
        assertEquals(4, pool.peakLeasedBuffers(), "the peak is remembered");
    }

    @Test
    void aSharedChunkReturnsItsBufferOnlyWhenEveryViewIsReleased() {
        BufferPool pool = BufferPool.create(CHUNK, CHUNK);
        PooledBuffer buffer = pool.tryAcquire();
        PageChunk chunk = PageChunk.of(buffer, PageRun.PAGE_SIZE,
                List.of(new PageRun(0x1000, 1, PagemapId.task(1), 0x1000, PageFlags.PE_PRESENT)), 0);
        PageChunk view = chunk.retain();
        assertNotSame(chunk, view);
        chunk.release();
        chunk.release(); // idempotent per view
        assertEquals(1, pool.leasedBuffers(), "the second view still holds the buffer");
        view.release();
        assertEquals(0, pool.leasedBuffers());
        assertThrows(IllegalStateException.class, view::data);
    }

    @Test
    void rejectsABudgetSmallerThanOneChunkAndOddChunkSizes() {
        IllegalArgumentException small = assertThrows(IllegalArgumentException.class,
                () -> BufferPool.create(DataSize.ofKibibytes(32), CHUNK));
        assertTrue(small.getMessage().contains("budget 32 KiB is smaller than one chunk (64 KiB)"), small.getMessage());
        IllegalArgumentException odd = assertThrows(IllegalArgumentException.class,
                () -> BufferPool.create(DataSize.ofMebibytes(1), DataSize.ofBytes(5000)));
        assertTrue(odd.getMessage().contains("chunk size 4.9 KiB must be a multiple of the page size"), odd.getMessage());
    }

    @Test
    void samplesFollowEveryLeaseReleaseAndWaitOnTheGivenClock() {
        VirtualTimeScheduler clock = VirtualTimeScheduler.create();
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(128), CHUNK);
        List<PoolSample> samples = new ArrayList<>();
        Disposable following = pool.samples(clock).subscribe(samples::add);

        PooledBuffer a = pool.tryAcquire();
        clock.advanceTimeBy(Duration.ofSeconds(2));
        PooledBuffer b = pool.tryAcquire();
        pool.recordWait();
        clock.advanceTimeBy(Duration.ofMillis(500));
        a.release();
        following.dispose();
        b.release(); // after dispose: not seen

        assertEquals(List.of(Event.SNAPSHOT, Event.ACQUIRED, Event.ACQUIRED, Event.WAITED, Event.RELEASED),
                samples.stream().map(PoolSample::event).toList());
        assertEquals(List.of(0, 1, 2, 2, 1), samples.stream().map(PoolSample::leasedBuffers).toList());
        assertEquals(List.of(0, 1, 2, 2, 2), samples.stream().map(PoolSample::peakLeasedBuffers).toList());
        assertEquals(List.of(0L, 0L, 0L, 1L, 1L), samples.stream().map(PoolSample::waits).toList());
        assertEquals(List.of(Instant.EPOCH, Instant.EPOCH, Instant.ofEpochSecond(2), Instant.ofEpochSecond(2),
                Instant.ofEpochMilli(2500)), samples.stream().map(PoolSample::at).toList());
        PoolSample last = samples.get(4);
        assertEquals(64 * 1024, last.leasedBytes());
        assertEquals(128 * 1024, last.peakLeasedBytes());
        assertEquals(128 * 1024, last.capacityBytes());
        assertEquals(2, last.acquisitions());
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void periodicSamplesSeeTheStateAtEachTick() {
        VirtualTimeScheduler clock = VirtualTimeScheduler.create();
        BufferPool pool = BufferPool.create(DataSize.ofKibibytes(256), CHUNK);
        List<PoolSample> samples = new ArrayList<>();
        Disposable ticking = pool.samples(Duration.ofSeconds(1), clock).subscribe(samples::add);
        PooledBuffer a = pool.tryAcquire();
        PooledBuffer b = pool.tryAcquire();
        clock.advanceTimeBy(Duration.ofSeconds(1));
        a.release();
        clock.advanceTimeBy(Duration.ofSeconds(1));
        b.release();
        clock.advanceTimeBy(Duration.ofSeconds(1));
        ticking.dispose();
        clock.advanceTimeBy(Duration.ofSeconds(5));

        assertEquals(List.of(0, 2, 1, 0), samples.stream().map(PoolSample::leasedBuffers).toList());
        assertEquals(List.of(0L, 1000L, 2000L, 3000L), samples.stream().map(s -> s.at().toEpochMilli()).toList());
        assertTrue(samples.stream().allMatch(s -> s.event() == Event.SNAPSHOT));
        assertEquals(2, samples.get(3).peakLeasedBuffers());
        assertThrows(IllegalArgumentException.class, () -> pool.samples(Duration.ZERO, clock));
    }

    @Test
    void releaseListenersRunUntilDisposed() {
        BufferPool pool = BufferPool.create(CHUNK, CHUNK);
        AtomicInteger calls = new AtomicInteger();
        Disposable listening = pool.onRelease(calls::incrementAndGet);
        pool.tryAcquire().release();
        listening.dispose();
        pool.tryAcquire().release();
        assertEquals(1, calls.get());
    }

    @Test
    void closeUnmapsFreeBuffersAtOnceAndLeasedOnesOnlyWhenReleased() {
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(8), DataSize.ofMebibytes(4));
        PooledBuffer kept = pool.tryAcquire();
        PooledBuffer returned = pool.tryAcquire();
        returned.release();
        PageChunk chunk = PageChunk.of(kept, 4096,
                List.of(new PageRun(0x1000, 1, PagemapId.task(1), 0x1000, PageFlags.PE_PRESENT)), 0);
        PageChunk slice = chunk.retain(); // a second view, as a tee hands each sink
        chunk.release();
        assertTrue(HugePageBuffers.isMapped(returned.address()));
        pool.close();
        assertTrue(pool.isClosed());
        assertFalse(HugePageBuffers.isMapped(returned.address()), "a free buffer is unmapped on close");
        // a chunk still uses the other: it stays mapped and readable
        assertTrue(HugePageBuffers.isMapped(kept.address()), "a leased buffer was unmapped under its chunk");
        kept.buffer().put(0, (byte) 9);
        assertEquals(9, kept.buffer().get(0));
        pool.close(); // idempotent
        assertTrue(HugePageBuffers.isMapped(kept.address()));
        slice.release();
        assertFalse(HugePageBuffers.isMapped(kept.address()), "unmapped once its last chunk released it");
        assertEquals(0, pool.leasedBuffers());

        IllegalStateException e = assertThrows(IllegalStateException.class, pool::tryAcquire);
        assertEquals("buffer pool closed: BufferPool[chunk=4 MiB capacity=2 leased=0 peak=2 closed]: the dump that "
                + "owned it has ended; create a new pool (or run the dump again)", e.getMessage());
    }

    @Test
    void aClosedPoolWakesNoWaiters() {
        BufferPool pool = BufferPool.create(CHUNK, CHUNK);
        PooledBuffer b = pool.tryAcquire();
        AtomicInteger woken = new AtomicInteger();
        pool.onRelease(woken::incrementAndGet);
        pool.close();
        b.release(); // a waiter would call tryAcquire, which fails now, on this releasing thread
        assertEquals(0, woken.get());
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void aListenerThatMeetsAPoolClosedWhileItRunsDoesNotFailTheRelease() {
        BufferPool pool = BufferPool.create(DataSize.ofMebibytes(8), DataSize.ofMebibytes(4));
        PooledBuffer first = pool.tryAcquire();
        PooledBuffer second = pool.tryAcquire();
        AtomicInteger runs = new AtomicInteger();
        // a waiter woken by a release while the owning dump ends: close() lands between the release's check
        // and the waiter's acquire (as a compressor task waiting for an output buffer does)
        pool.onRelease(() -> {
            runs.incrementAndGet();
            pool.close();
            pool.tryAcquire();
        });
        AtomicInteger later = new AtomicInteger();
        pool.onRelease(later::incrementAndGet);
        first.release(); // threw IllegalStateException("buffer pool closed: ...") out of release()
        assertEquals(1, runs.get());
        assertEquals(0, later.get(), "no listener runs once the pool is closed");
        assertFalse(HugePageBuffers.isMapped(first.address()), "the released buffer is unmapped");
        second.release();
        assertFalse(HugePageBuffers.isMapped(second.address()));
        assertEquals(0, pool.leasedBuffers());
    }

    @Test
    void aFailedAllocationGivesItsSlotBack() {
        AtomicInteger calls = new AtomicInteger();
        BufferPool pool = new BufferPool(4096, 1, size -> {
            if (calls.getAndIncrement() == 0) {
                throw new OutOfMemoryError("cannot map a huge-page buffer: size=" + size + " errno=12");
            }
            return ByteBuffer.allocateDirect(size);
        });
        OutOfMemoryError e = assertThrows(OutOfMemoryError.class, pool::tryAcquire);
        assertEquals("cannot map a huge-page buffer: size=4096 errno=12", e.getMessage());
        assertEquals(0, pool.allocatedBuffers());
        // the one slot is still there: without giving it back the pool would stay empty for good
        PooledBuffer b = pool.tryAcquire();
        assertNotNull(b);
        assertEquals(4096, b.capacity());
        assertEquals(1, pool.allocatedBuffers());
        b.release();
    }
}
