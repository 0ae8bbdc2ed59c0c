package io.pageflux.pipeline;

import io.pageflux.sink.SinkResult;
import io.pageflux.source.PageRun;
import java.time.Duration;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/**
 * What a completed {@link Dump} did.
 *
 * @param pid                the dumped process
 * @param preDump            whether it was a pre-dump
 * @param regionsSeen        regions (VMAs) the policy looked at
 * @param regionsDumped      regions the policy selected
 * @param regionsSkipped     regions the policy skipped, by its reason (sorted by reason)
 * @param runs               page runs the scan produced
 * @param pagesPlanned       pages the scan selected
 * @param pagesDumped        pages read and handed to the sink(s)
 * @param chunks             chunks read (one {@code process_vm_readv} batch each)
 * @param pagesVanished      selected pages that could not be read any more (unmapped meanwhile)
 * @param vanishedAddresses  the first vanished page addresses (at most
 *                           {@link io.pageflux.source.DumpStats#VANISHED_ADDRESSES_KEPT})
 * @param duration           from subscription to the sinks' completion
 * @param chunkSize          bytes per pooled buffer
 * @param poolCapacity       buffers the budget allows
 * @param peakBuffersLeased  most buffers leased at once (never above {@code poolCapacity})
 * @param poolWaits          times the reader had demand but had to wait for a free buffer
 * @param sinks              each sink's own account, in the order the sinks were given
 */
public record DumpReport(int pid, boolean preDump, long regionsSeen, long regionsDumped,
                         Map<String, Long> regionsSkipped, long runs, long pagesPlanned, long pagesDumped,
                         long chunks, long pagesVanished, List<Long> vanishedAddresses, Duration duration,
                         int chunkSize, int poolCapacity, int peakBuffersLeased, long poolWaits,
                         List<SinkResult> sinks) {

    public DumpReport {
        regionsSkipped = Collections.unmodifiableMap(new TreeMap<>(regionsSkipped));
        vanishedAddresses = List.copyOf(vanishedAddresses);
        sinks = List.copyOf(sinks);
        Objects.requireNonNull(duration, "duration");
    }

    public long bytesDumped() {
        return pagesDumped * PageRun.PAGE_SIZE;
    }

    /** Regions skipped for any reason. */
    public long regionsSkippedTotal() {
        return regionsSkipped.values().stream().mapToLong(Long::longValue).sum();
    }

    /** Bytes dumped per second of {@link #duration()}; 0 for an instant (or empty) dump. */
    public double bytesPerSecond() {
        long nanos = duration.toNanos();
        return nanos <= 0 ? 0 : bytesDumped() * 1e9 / nanos;
    }

    public long peakBytesLeased() {
        return (long) peakBuffersLeased * chunkSize;
    }

    public long budgetBytes() {
        return (long) poolCapacity * chunkSize;
    }
}
