package io.pageflux.source;

import io.pageflux.nativeio.HugePageBuffers;
import io.pageflux.nativeio.NativeBuffers;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.time.Instant;
import java.util.Objects;
import java.util.function.IntFunction;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.FluxSink;
import reactor.core.scheduler.Scheduler;

/**
 * A fixed budget of direct buffers, all {@link #chunkSize()} bytes, allocated on first use and
 * reused afterwards; never more than {@link #capacity()} exist. This is what bounds a dump's
 * memory: a reader only reads into a buffer it got from {@link #tryAcquire()}, and a buffer comes
 * back only when every {@link PageChunk} sharing it has been released.
 *
 * <p>Thread-safe. Readers that find the pool empty register {@link #onRelease(Runnable)} to be
 * woken when a buffer returns, instead of blocking a thread.
 *
 * <p>The pool publishes its state: read the counters directly, take a {@link #sample(Scheduler)},
 * follow every lease and release with {@link #samples(Scheduler)} (tests), or sample periodically
 * with {@link #samples(Duration, Scheduler)}. Applications with Micrometer bind
 * {@code io.pageflux.source.metrics.BufferPoolMetrics}; the pool itself never loads Micrometer.
 *
 * <p><b>Release.</b> {@link #close()} the pool when the dump that used it has ended: huge-page
 * buffers are mappings of their own, freed otherwise only by a GC that nothing triggers (they do
 * not count against {@code -XX:MaxDirectMemorySize}), so pools of finished dumps would keep their
 * memory. Closing unmaps the free buffers at once and each leased one when it comes back, never
 * a buffer a chunk still uses.
 */
public final class BufferPool implements AutoCloseable {

    private final int chunkSize;
    private final int capacity;
    private final ConcurrentLinkedQueue<PooledBuffer> free = new ConcurrentLinkedQueue<>();
    private final AtomicInteger allocated = new AtomicInteger();
    private final AtomicInteger leased = new AtomicInteger();
    private final AtomicInteger peakLeased = new AtomicInteger();
    private final AtomicLong acquisitions = new AtomicLong();
    private final AtomicLong waits = new AtomicLong();
    private final AtomicBoolean closed = new AtomicBoolean();
    /** Makes one buffer of {@code chunkSize} bytes; a seam for tests of allocation failures. */
    private final IntFunction<PooledBuffer> allocator;
    private final CopyOnWriteArrayList<Runnable> releaseListeners = new CopyOnWriteArrayList<>();
    /** Observers of every event; empty (one volatile read per event) unless someone follows {@link #samples}. */
    private final CopyOnWriteArrayList<EventListener> eventListeners = new CopyOnWriteArrayList<>();

    private BufferPool(int chunkSize, int capacity) {
        this.chunkSize = chunkSize;
        this.capacity = capacity;
        this.allocator = this::allocate;
    }

    /** A pool whose buffers come from {@code buffers} (tests of allocation failures). */
    BufferPool(int chunkSize, int capacity, IntFunction<ByteBuffer> buffers) {
        this.chunkSize = chunkSize;
        this.capacity = capacity;
        this.allocator = size -> {
            ByteBuffer b = buffers.apply(size);
            return new PooledBuffer(this, b, NativeBuffers.address(b));
        };
    }

    /**
     * A pool of {@code budget / chunkSize} buffers of {@code chunkSize} bytes.
     *
     * @throws IllegalArgumentException if the chunk size is not a positive multiple of the page size
     *                                  (at most 1 GiB), or the budget holds less than one chunk
     */
    public static BufferPool create(DataSize budget, DataSize chunkSize) {
        long chunk = chunkSize.bytes();
        if (chunk <= 0 || chunk % PageRun.PAGE_SIZE != 0 || chunk > (1L << 30)) {
            throw new IllegalArgumentException("chunk size " + chunkSize + " must be a multiple of the page size ("
                    + PageRun.PAGE_SIZE + " B) between 4 KiB and 1 GiB");
        }
        if (budget.bytes() < chunk) {
            throw new IllegalArgumentException("budget " + budget + " is smaller than one chunk (" + chunkSize
                    + "): raise the budget to at least " + chunkSize + " or lower the chunk size");
        }
        long count = budget.bytes() / chunk;
        if (count > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("budget " + budget + " holds too many chunks of " + chunkSize);
        }
        return new BufferPool((int) chunk, (int) count);
    }

    /**
     * A leased buffer, or {@code null} when all {@link #capacity()} buffers are leased. The
     * returned buffer is cleared (position 0, limit = capacity) and has one reference.
     *
     * @throws IllegalStateException once the pool is {@linkplain #close() closed}
     * @throws OutOfMemoryError      if the kernel refuses memory for a new buffer (the pool stays
     *                               usable: a later call may try again)
     */
    public PooledBuffer tryAcquire() {
        if (closed.get()) {
            throw new IllegalStateException("buffer pool closed: " + this
                    + ": the dump that owned it has ended; create a new pool (or run the dump again)");
        }
        PooledBuffer buffer = free.poll();
        if (buffer == null) {
            int n;
            do {
                n = allocated.get();
                if (n >= capacity) {
                    return null;
                }
            } while (!allocated.compareAndSet(n, n + 1));
            try {
                buffer = allocator.apply(chunkSize);
            } catch (RuntimeException | Error e) {
                // the slot was reserved above; without this the pool would shrink by one for good
                allocated.decrementAndGet();
                throw e;
            }
        }
        buffer.lease();
        int now = leased.incrementAndGet();
        peakLeased.accumulateAndGet(now, Math::max);
        acquisitions.incrementAndGet();
        publish(PoolSample.Event.ACQUIRED, now);
        return buffer;
    }

    /**
     * A buffer of {@code size} bytes: on huge pages where the size allows (multiples of 2 MiB, as
     * the default 4 MiB chunk), since an {@code O_DIRECT} write of a buffer on two huge pages is
     * one request to the disk instead of several, and a 1 GiB file dump ran 20% faster for it
     * ({@link HugePageBuffers}); else page-aligned from {@code allocateDirect}, which returns
     * memory 16 bytes off a page boundary, and the kernel's copy in {@code process_vm_readv}
     * runs about 3.5x slower into such a buffer.
     */
    private PooledBuffer allocate(int size) {
        if (size % HugePageBuffers.HUGE_PAGE_SIZE == 0) {
            HugePageBuffers.Mapping mapping = HugePageBuffers.map(size);
            return new PooledBuffer(this, mapping.buffer(), NativeBuffers.address(mapping.buffer()), mapping::unmap);
        }
        // the GC frees these, and they count against MaxDirectMemorySize, which triggers it
        ByteBuffer direct = ByteBuffer.allocateDirect(size + PageRun.PAGE_SIZE).alignedSlice(PageRun.PAGE_SIZE)
                .limit(size).slice();
        return new PooledBuffer(this, direct, NativeBuffers.address(direct));
    }

    /** Called by {@link PooledBuffer} when its last reference is released. */
    void giveBack(PooledBuffer buffer) {
        free.offer(buffer);
        int now = leased.decrementAndGet();
        publish(PoolSample.Event.RELEASED, now);
        if (closed.get()) {
            // offered before reading the flag: either close() sees this buffer or this sees close()
            unmapFree();
            // nobody may lease any more: waking waiters would only make them fail on this thread
            return;
        }
        for (Runnable listener : releaseListeners) {
            if (closed.get()) {
                return; // closed meanwhile: the listeners' dumps are ending, and leasing would fail
            }
            try {
                listener.run();
            } catch (IllegalStateException e) {
                // a listener that raced with close() met the closed pool: the release itself went fine,
                // and its caller (often a finally block) must not see another dump's shutdown
                if (!closed.get()) {
                    throw e;
                }
            }
        }
    }

    /**
     * Frees the pool's memory: unmaps the free buffers now and every leased buffer when its last
     * chunk releases it (never memory still in use). Later {@link #tryAcquire()} calls fail.
     * Idempotent; call it when the dump using the pool has ended.
     */
    @Override
    public void close() {
        if (closed.compareAndSet(false, true)) {
            unmapFree();
        }
    }

    /** Whether {@link #close()} was called. */
    public boolean isClosed() {
        return closed.get();
    }

    private void unmapFree() {
        // poll is atomic: concurrent callers never unmap one buffer twice (and unmap is idempotent anyway)
        for (PooledBuffer b = free.poll(); b != null; b = free.poll()) {
            b.unmap();
        }
    }

    /**
     * Runs {@code listener} (on the releasing thread) every time a buffer returns to the pool,
     * until the returned handle is disposed. Listeners must be quick: schedule work, don't do it.
     */
    public Disposable onRelease(Runnable listener) {
        releaseListeners.add(listener);
        return () -> releaseListeners.remove(listener);
    }

    /** Counts one time a reader had demand but found no free buffer. */
    public void recordWait() {
        waits.incrementAndGet();
        publish(PoolSample.Event.WAITED, leased.get());
    }

    /** The pool's state now, timestamped with {@code clock}'s time. */
    public PoolSample sample(Scheduler clock) {
        return sample(clock, PoolSample.Event.SNAPSHOT, leased.get());
    }

    /**
     * One sample per event: every lease ({@code ACQUIRED}), every buffer coming back
     * ({@code RELEASED}) and every reader finding the pool empty ({@code WAITED}), each with the
     * leased count right after that event, timestamped with {@code clock} (pass the
     * {@code VirtualTimeScheduler} in virtual-time tests). Starts with a {@code SNAPSHOT} of the
     * current state. Never completes; cancel it (or use {@code takeUntilOther}) when the dump ends.
     *
     * <p><b>Backpressure:</b> samples the subscriber has not requested yet are buffered without
     * bound (a dump of {@code n} chunks produces about {@code 2n} samples); request unbounded, e.g.
     * {@code collectList()}, or use {@link #samples(Duration, Scheduler)} for long runs. Events on
     * different threads are serialized; samples from concurrent events may arrive in either order.
     * Observing costs the reader nothing while nobody subscribes.
     */
    public Flux<PoolSample> samples(Scheduler clock) {
        Objects.requireNonNull(clock, "clock");
        return Flux.create(sink -> {
            EventListener listener = (event, leasedNow) -> sink.next(sample(clock, event, leasedNow));
            // the snapshot goes first; an event racing with this subscription may be missed, the peak still counts it
            sink.next(sample(clock));
            eventListeners.add(listener);
            sink.onDispose(() -> eventListeners.remove(listener));
        }, FluxSink.OverflowStrategy.BUFFER);
    }

    /**
     * A {@code SNAPSHOT} sample every {@code interval} on {@code scheduler}, the first one at once.
     * Samples between two snapshots are not seen, but {@link PoolSample#peakLeasedBuffers()} still
     * records the highest lease count. Never completes.
     *
     * <p><b>Backpressure:</b> keeps only the latest sample the subscriber has not requested yet.
     */
    public Flux<PoolSample> samples(Duration interval, Scheduler scheduler) {
        Objects.requireNonNull(scheduler, "scheduler");
        if (interval.isZero() || interval.isNegative()) {
            throw new IllegalArgumentException("sample interval must be positive: interval=" + interval);
        }
        return Flux.interval(Duration.ZERO, interval, scheduler)
                .map(tick -> sample(scheduler))
                .onBackpressureLatest();
    }

    private void publish(PoolSample.Event event, int leasedNow) {
        if (!eventListeners.isEmpty()) {
            for (EventListener listener : eventListeners) {
                listener.on(event, leasedNow);
            }
        }
    }

    private PoolSample sample(Scheduler clock, PoolSample.Event event, int leasedNow) {
        Instant at = Instant.EPOCH.plusNanos(clock.now(TimeUnit.NANOSECONDS));
        return new PoolSample(at, event, leasedNow, peakLeased.get(), waits.get(), acquisitions.get(), capacity,
                chunkSize);
    }

    @FunctionalInterface
    private interface EventListener {
        void on(PoolSample.Event event, int leasedNow);
    }

    public int chunkSize() {
        return chunkSize;
    }

    /** How many buffers the budget allows. */
    public int capacity() {
        return capacity;
    }

    public DataSize budget() {
        return DataSize.ofBytes((long) chunkSize * capacity);
    }

    public int leasedBuffers() {
        return leased.get();
    }

    public long leasedBytes() {
        return (long) leased.get() * chunkSize;
    }

    public int peakLeasedBuffers() {
        return peakLeased.get();
    }

    public long peakLeasedBytes() {
        return (long) peakLeased.get() * chunkSize;
    }

    /** Buffers allocated so far (never more than {@link #capacity()}). */
    public int allocatedBuffers() {
        return allocated.get();
    }

    public long acquisitions() {
        return acquisitions.get();
    }

    public long waits() {
        return waits.get();
    }

    @Override
    public String toString() {
        return "BufferPool[chunk=" + DataSize.format(chunkSize) + " capacity=" + capacity + " leased="
                + leased.get() + " peak=" + peakLeased.get() + (closed.get() ? " closed" : "") + "]";
    }
}
