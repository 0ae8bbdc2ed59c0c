package io.pageflux.source.freeze;

import java.time.Duration;
import java.util.List;

/**
 * A target stopped by a {@link Freezer}. Closing it thaws the target; thawing twice does nothing.
 * Thread-safe: any thread may thaw (the freezer hands the work to whichever thread the kernel
 * requires).
 */
public interface FrozenProcess extends AutoCloseable {

    /** The pid that was frozen (for a cgroup: the pid it was asked about, or 0). */
    int pid();

    /** The thread ids (or, for a cgroup, process ids) that were stopped, ascending. */
    List<Integer> threads();

    /**
     * Areas of the target's memory that the kernel writes on its own ({@code struct rseq} of each thread),
     * found while frozen; empty when the freezer cannot tell (cgroup freezer, kernels before 5.13).
     */
    default List<KernelWrittenArea> kernelWritten() {
        return List.of();
    }

    /** How long stopping took: from the first stop request until the last thread had stopped. */
    Duration freezeLatency();

    /**
     * How long the target has been stopped: from the first stop request until now, or until the
     * thaw completed once it has been thawed. This is the pause the target's users saw.
     */
    Duration frozenTime();

    /** Whether it is still stopped (not yet thawed). */
    boolean isFrozen();

    /**
     * Lets the target run again and returns the total {@link #frozenTime()}. Idempotent.
     *
     * @throws FreezeException if the target could not be resumed (the freezer says what to do)
     */
    Duration thaw();

    /** {@link #thaw()}. */
    @Override
    default void close() {
        thaw();
    }
}
