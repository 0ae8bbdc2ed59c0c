package io.pageflux.source.incremental;

import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.freeze.ProcTask;

/**
 * Whether the process now running under a pid is the one a parent dump was taken of, the way CRIU
 * decides it (criu-formats.md §1.5): the process's start time ({@code /proc/PID/stat} field 22, clock
 * ticks since boot) must be before the parent inventory's {@code dump_uptime} (microseconds since boot).
 * A process that started after the parent dump is a different process that got the same pid: it must
 * get no PE_PARENT holes against that parent.
 *
 * @param pid              the pid
 * @param startMicros      when the process now holding the pid started, microseconds since boot
 *                         (10 ms resolution)
 * @param parentUptimeMicros the parent dump's {@code dump_uptime}
 */
public record PidReuse(int pid, long startMicros, long parentUptimeMicros) {

    /**
     * Checks the running process {@code pid} against a parent dumped at {@code parentUptimeMicros}.
     *
     * @throws ProcessGoneException if there is no process {@code pid}
     */
    public static PidReuse check(int pid, long parentUptimeMicros) {
        ProcTask.Stat stat = ProcTask.stat(pid);
        if (stat == null || stat.exited()) {
            throw new ProcessGoneException(pid, "reason=exited file=/proc/" + pid + "/stat: the target is gone");
        }
        return new PidReuse(pid, stat.startMicros(), parentUptimeMicros);
    }

    /** The pid belongs to another process than the parent dump's: it started after that dump. */
    public boolean reused() {
        return startMicros > parentUptimeMicros;
    }

    /** {@code key=value} facts for messages. */
    public String describe() {
        return "pid=" + pid + " start_time_us=" + startMicros + " parent_dump_uptime_us=" + parentUptimeMicros
                + (reused() ? " (started after the parent dump: pid reused)" : " (same process)");
    }
}
