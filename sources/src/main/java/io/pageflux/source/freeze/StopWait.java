package io.pageflux.source.freeze;

import java.util.concurrent.locks.LockSupport;

/**
 * The pause between two polls while waiting for a target to stop (threads in {@code t} state, or
 * {@code frozen 1} in {@code cgroup.events}): every poll counts as frozen time, so the first 16 only
 * yield (a stop usually lands within microseconds), then the pause grows from 10 µs to at most 1 ms.
 */
final class StopWait {

    private StopWait() {
    }

    /** Pauses after poll number {@code round} (1, 2, ...). */
    static void pause(int round) {
        if (round < 16) {
            Thread.yield();
        } else {
            LockSupport.parkNanos(Math.min(1_000_000L, 10_000L << Math.min(7, round - 16)));
        }
    }
}
