package io.pageflux.source.freeze;

import java.nio.file.Path;

/**
 * Stops a process so that its memory holds still, and lets it run again.
 *
 * <pre>{@code
 * try (FrozenProcess frozen = Freezer.ptrace(pid).freeze()) {
 *     // every thread of pid is stopped here: scan or read its memory
 * }   // close() thaws; frozen.frozenTime() says for how long it was stopped
 * }</pre>
 *
 * Implementations: {@link ThreadFreezer} (ptrace: one process, crash-safe — the kernel lets the target
 * go if pageflux dies) and {@link CgroupFreezer} (cgroup v2 {@code cgroup.freeze}: a whole container).
 */
public interface Freezer {

    /**
     * Stops the target and returns once every thread is stopped. The returned handle thaws it on
     * {@link FrozenProcess#close()}. On failure nothing stays stopped.
     *
     * @throws FreezeException                      the target could not be stopped (already traced, a thread
     *                                              that does not stop, ...)
     * @throws io.pageflux.source.ProcessGoneException the target does not exist or exited while freezing
     */
    FrozenProcess freeze();

    /**
     * Loads and exercises what {@link #freeze()} will need, without stopping anything, so that the first
     * freeze of a fresh JVM does not pay for class loading while the target is stopped. Optional.
     */
    default void prepare() {
    }

    /** A short description for reports, e.g. {@code ptrace:1234} or {@code cgroup:/sys/fs/cgroup/app}. */
    String describe();

    /** Freezes the threads of {@code pid} with ptrace (see {@link ThreadFreezer}). */
    static Freezer ptrace(int pid) {
        return ThreadFreezer.of(pid);
    }

    /** Freezes every process of a cgroup v2 directory (see {@link CgroupFreezer}). */
    static Freezer cgroup(Path cgroupDirectory) {
        return CgroupFreezer.of(cgroupDirectory);
    }
}
