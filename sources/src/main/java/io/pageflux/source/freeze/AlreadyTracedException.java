package io.pageflux.source.freeze;

/**
 * Another tracer (a debugger, {@code strace}, a second pageflux) is attached to the target, so it cannot
 * be frozen with ptrace: a thread has one tracer at most.
 */
public class AlreadyTracedException extends FreezeException {

    private final int tracerPid;

    /**
     * @param pid       the target
     * @param tid       the thread found traced
     * @param tracerTid {@code TracerPid} as {@code /proc} shows it: the tracer's thread id
     */
    public AlreadyTracedException(int pid, int tid, int tracerTid) {
        this(pid, tid, tracerTid, ProcTask.tgid(tracerTid));
    }

    private AlreadyTracedException(int pid, int tid, int tracerTid, int tracerPid) {
        super(pid, "pid=" + pid + " is already traced by pid=" + tracerPid + " (TracerPid in /proc/" + pid
                + (tid == pid ? "" : "/task/" + tid) + "/status): detach the debugger"
                + describe(tracerPid, tracerTid) + " and try again, or freeze with the cgroup freezer instead");
        this.tracerPid = tracerPid;
    }

    private static String describe(int tracerPid, int tracerTid) {
        String command = tracerPid > 0 ? ProcTask.command(tracerPid) : "";
        String thread = tracerTid != tracerPid ? "tracer thread tid=" + tracerTid : "";
        String both = command.isEmpty() ? thread : thread.isEmpty() ? command : command + ", " + thread;
        return both.isEmpty() ? "" : " (" + both + ")";
    }

    /** The process id of the tracer that holds the target. */
    public int tracerPid() {
        return tracerPid;
    }
}
