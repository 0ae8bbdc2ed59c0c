package io.pageflux.source;

import java.time.Instant;

/**
 * The state of a {@link BufferPool} at one instant, as {@link BufferPool#samples(reactor.core.scheduler.Scheduler)}
 * and {@link BufferPool#sample(reactor.core.scheduler.Scheduler)} report it.
 *
 * @param at                 when, on the clock of the scheduler that took the sample (virtual time in
 *                           tests: {@code Instant.EPOCH} plus the virtual time)
 * @param event              what caused the sample
 * @param leasedBuffers      buffers leased right after the event
 * @param peakLeasedBuffers  the most buffers ever leased at once, so far
 * @param waits              times a reader had demand but found no free buffer, so far
 * @param acquisitions       buffers handed out, so far
 * @param capacity           buffers the budget allows
 * @param chunkSize          bytes per buffer
 */
public record PoolSample(Instant at, Event event, int leasedBuffers, int peakLeasedBuffers, long waits,
                         long acquisitions, int capacity, int chunkSize) {

    /** What a sample was taken for. */
    public enum Event {
        /** A buffer was leased. */
        ACQUIRED,
        /** A buffer came back to the pool. */
        RELEASED,
        /** A reader had demand but every buffer was leased. */
        WAITED,
        /** Not an event: a periodic or on-request sample. */
        SNAPSHOT
    }

    public long leasedBytes() {
        return (long) leasedBuffers * chunkSize;
    }

    public long peakLeasedBytes() {
        return (long) peakLeasedBuffers * chunkSize;
    }

    /** The budget in bytes. */
    public long capacityBytes() {
        return (long) capacity * chunkSize;
    }

    @Override
    public String toString() {
        return "PoolSample[" + at + " " + event + " leased=" + leasedBuffers + "/" + capacity + " peak="
                + peakLeasedBuffers + " waits=" + waits + " acquisitions=" + acquisitions + " chunk="
                + DataSize.format(chunkSize) + "]";
    }
}
