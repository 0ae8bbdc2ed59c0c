package io.pageflux.source;

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
 */
public record ReadOptions(RegionPolicy policy, BufferPool pool, int maxRunsPerRead, Scheduler scheduler,
                          DumpStats stats) {

    public static final int MAX_IOVECS = 1024;

    public ReadOptions {
        Objects.requireNonNull(policy, "policy");
        Objects.requireNonNull(pool, "pool");
        Objects.requireNonNull(scheduler, "scheduler");
        Objects.requireNonNull(stats, "stats");
        if (maxRunsPerRead < 1 || maxRunsPerRead > MAX_IOVECS) {
            throw new IllegalArgumentException("maxRunsPerRead must be 1.." + MAX_IOVECS + ": " + maxRunsPerRead);
        }
    }

    /** CRIU's full-dump selection, 1024 runs per call, reads on {@link Schedulers#boundedElastic()}. */
    public static ReadOptions of(BufferPool pool) {
        return new ReadOptions(RegionPolicy.criuFullDump(), pool, MAX_IOVECS, Schedulers.boundedElastic(),
                new DumpStats());
    }

    public ReadOptions withPolicy(RegionPolicy policy) {
        return new ReadOptions(policy, pool, maxRunsPerRead, scheduler, stats);
    }

    public ReadOptions withPool(BufferPool pool) {
        return new ReadOptions(policy, pool, maxRunsPerRead, scheduler, stats);
    }

    public ReadOptions withMaxRunsPerRead(int maxRunsPerRead) {
        return new ReadOptions(policy, pool, maxRunsPerRead, scheduler, stats);
    }

    public ReadOptions withScheduler(Scheduler scheduler) {
        return new ReadOptions(policy, pool, maxRunsPerRead, scheduler, stats);
    }

    public ReadOptions withStats(DumpStats stats) {
        return new ReadOptions(policy, pool, maxRunsPerRead, scheduler, stats);
    }
}
