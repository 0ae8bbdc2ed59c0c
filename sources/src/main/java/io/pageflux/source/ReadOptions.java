package io.pageflux.source;

import java.util.List;
import java.util.Objects;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * How a {@link MemorySource} reads: which regions, into which pool, in batches of how many runs,
 * on which scheduler, counting into which {@link DumpStats}. Immutable; {@code withX} returns a
 * modified copy.
 *
 * @param policy          region selection
 * @param pool            the buffer budget; the chunk size is the pool's
 * @param maxRunsPerRead  remote iovecs per {@code process_vm_readv} call (the kernel caps it at 1024)
 * @param scheduler       where reads run (blocking syscalls: a bounded-elastic or dedicated thread)
 * @param stats           counters the reader updates as it goes
 * @param regions         the target's regions as the caller has just read them ({@link MemorySource#regions()}),
 *                        for a live source to scan instead of reading {@code /proc/PID/smaps} a second time
 *                        (the kernel walks every page table entry for smaps: about 13 ms per GiB resident);
 *                        {@code null} (the default): the source reads them when it starts reading. A source
 *                        that must see the layout at a particular moment (frozen) reads its own.
 * @param countPlanned    whether the page scan first makes a counting pass so that
 *                        {@link DumpStats#pagesPlanned()} holds the total before the first chunk (what a progress
 *                        bar needs; it costs one more page-table walk). Without it the planned pages grow as the
 *                        scan selects runs, and equal the total once the stream completes. Default {@code true}.
 * @param readThreads     threads copying each large read batch of a live process at once, 1..16 (default 1:
 *                        the stream's read worker only). With 2, a batch is copied in pieces on two cores at once,
 *                        which nearly doubles the copy rate when a core is free, at the cost of that core (the
 *                        target keeps running meanwhile); it pays off only when the copy is the bottleneck (not
 *                        when a disk or a compressor sets the pace); see {@link LiveChunkReader}.
 */
public record ReadOptions(RegionPolicy policy, BufferPool pool, int maxRunsPerRead, Scheduler scheduler,
                          DumpStats stats, List<MemoryRegion> regions, boolean countPlanned, int readThreads) {

    public static final int MAX_IOVECS = 1024;

    public ReadOptions {
        Objects.requireNonNull(policy, "policy");
        Objects.requireNonNull(pool, "pool");
        Objects.requireNonNull(scheduler, "scheduler");
        Objects.requireNonNull(stats, "stats");
        if (maxRunsPerRead < 1 || maxRunsPerRead > MAX_IOVECS) {
            throw new IllegalArgumentException("maxRunsPerRead must be 1.." + MAX_IOVECS + ": " + maxRunsPerRead);
        }
        regions = regions == null ? null : List.copyOf(regions);
        if (readThreads < 1 || readThreads > LiveChunkReader.MAX_READ_THREADS) {
            throw new IllegalArgumentException("readThreads must be 1.." + LiveChunkReader.MAX_READ_THREADS + ": "
                    + readThreads);
        }
    }

    /** Regions read by the source itself, with the counting pass. */
    public ReadOptions(RegionPolicy policy, BufferPool pool, int maxRunsPerRead, Scheduler scheduler,
                       DumpStats stats) {
        this(policy, pool, maxRunsPerRead, scheduler, stats, null, true, 1);
    }

    /** CRIU's full-dump selection, 1024 runs per call, reads on {@link Schedulers#boundedElastic()}. */
    public static ReadOptions of(BufferPool pool) {
        return new ReadOptions(RegionPolicy.criuFullDump(), pool, MAX_IOVECS, Schedulers.boundedElastic(),
                new DumpStats());
    }

    public ReadOptions withPolicy(RegionPolicy policy) {
        return new ReadOptions(policy, pool, maxRunsPerRead, scheduler, stats, regions, countPlanned, readThreads);
    }

    public ReadOptions withPool(BufferPool pool) {
        return new ReadOptions(policy, pool, maxRunsPerRead, scheduler, stats, regions, countPlanned, readThreads);
    }

    public ReadOptions withMaxRunsPerRead(int maxRunsPerRead) {
        return new ReadOptions(policy, pool, maxRunsPerRead, scheduler, stats, regions, countPlanned, readThreads);
    }

    public ReadOptions withScheduler(Scheduler scheduler) {
        return new ReadOptions(policy, pool, maxRunsPerRead, scheduler, stats, regions, countPlanned, readThreads);
    }

    public ReadOptions withStats(DumpStats stats) {
        return new ReadOptions(policy, pool, maxRunsPerRead, scheduler, stats, regions, countPlanned, readThreads);
    }

    /** A copy whose source scans {@code regions} (just read by the caller) instead of reading them again. */
    public ReadOptions withRegions(List<MemoryRegion> regions) {
        return new ReadOptions(policy, pool, maxRunsPerRead, scheduler, stats,
                Objects.requireNonNull(regions, "regions"), countPlanned, readThreads);
    }

    /** A copy that copies each large batch with {@code readThreads} threads (see {@link #readThreads()}). */
    public ReadOptions withReadThreads(int readThreads) {
        return new ReadOptions(policy, pool, maxRunsPerRead, scheduler, stats, regions, countPlanned, readThreads);
    }

    /** A copy with or without the counting pass (see {@link #countPlanned()}). */
    public ReadOptions withCountPlanned(boolean countPlanned) {
        return new ReadOptions(policy, pool, maxRunsPerRead, scheduler, stats, regions, countPlanned, readThreads);
    }
}
