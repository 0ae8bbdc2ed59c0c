package io.pageflux.nativeio;

import jnr.ffi.Pointer;

/**
 * The few {@code ptrace(2)} / {@code waitpid(2)} / {@code kill(2)} operations pageflux's freezer needs,
 * with raw status words decoded by {@link WaitStatus}.
 *
 * <p><b>Threading.</b> The kernel ties a tracee to the <em>thread</em> that attached it: every
 * {@code ptrace} request and every {@code waitpid} for that tracee must come from that same thread.
 * Callers therefore run a whole freeze/thaw cycle on one dedicated thread. If that thread (or the whole
 * JVM) dies, the kernel detaches its tracees and lets them run: a crashed dumper cannot leave a target
 * stopped.
 *
 * <p>Failures are {@link NativeCallException}s with errno and {@code key=value} facts; the layers above
 * turn them into domain exceptions (ESRCH: the thread is gone; EPERM: already traced or not allowed).
 */
public final class Ptrace {

    /** {@code PTRACE_DETACH}. */
    public static final long PTRACE_DETACH = 17;
    /** {@code PTRACE_SEIZE}: attach without stopping the tracee (Linux 3.4+). */
    public static final long PTRACE_SEIZE = 0x4206;
    /** {@code PTRACE_INTERRUPT}: stop a seized tracee; it reports a {@code PTRACE_EVENT_STOP}. */
    public static final long PTRACE_INTERRUPT = 0x4207;

    /** {@code PTRACE_GET_RSEQ_CONFIGURATION} (Linux 5.13+): where a stopped tracee registered its {@code struct rseq}. */
    public static final long PTRACE_GET_RSEQ_CONFIGURATION = 0x420f;
    /** {@code sizeof(struct ptrace_rseq_configuration)}: u64 pointer, u32 size, u32 signature, u32 flags, u32 pad. */
    static final int RSEQ_CONFIGURATION_SIZE = 24;

    /** {@code PTRACE_EVENT_STOP}: the event number of a stop caused by {@code PTRACE_INTERRUPT} or a group stop. */
    public static final int PTRACE_EVENT_STOP = 128;

    /** {@code __WALL}: wait for all children, clone or not (threads of a traced process). */
    public static final int WALL = 0x40000000;
    /** {@code WNOHANG}: return 0 at once if no child changed state. */
    public static final int WNOHANG = 1;

    public static final int SIGKILL = 9;
    public static final int SIGSTOP = 19;

    private Ptrace() {
    }

    /**
     * {@code PTRACE_SEIZE}: become the tracer of thread {@code tid} without stopping it.
     *
     * @throws NativeCallException ESRCH (no such thread), EPERM (already traced, or not permitted)
     */
    public static void seize(int tid, long options) {
        if (Native.LIBC.ptrace(PTRACE_SEIZE, tid, 0, options) == -1) {
            int errno = Native.lastErrno();
            throw new NativeCallException("ptrace(PTRACE_SEIZE)", errno, "tid=" + tid);
        }
    }

    /**
     * {@code PTRACE_INTERRUPT}: ask a seized thread to stop; collect the stop with {@link #waitpid}.
     *
     * @throws NativeCallException ESRCH (the thread is gone or not traced by this thread)
     */
    public static void interrupt(int tid) {
        if (Native.LIBC.ptrace(PTRACE_INTERRUPT, tid, 0, 0) == -1) {
            int errno = Native.lastErrno();
            throw new NativeCallException("ptrace(PTRACE_INTERRUPT)", errno, "tid=" + tid);
        }
    }

    /**
     * {@code PTRACE_DETACH}: let a stopped tracee run again, delivering {@code signal} (0 for none) — the
     * way to hand back a signal that arrived while the thread was stopped.
     *
     * @throws NativeCallException ESRCH (the thread is gone, or not in a ptrace stop)
     */
    public static void detach(int tid, int signal) {
        if (Native.LIBC.ptrace(PTRACE_DETACH, tid, 0, signal) == -1) {
            int errno = Native.lastErrno();
            throw new NativeCallException("ptrace(PTRACE_DETACH)", errno, "tid=" + tid + " signal=" + signal);
        }
    }

    /**
     * {@code PTRACE_GET_RSEQ_CONFIGURATION} of a thread in a ptrace stop: the {@code struct rseq} the kernel
     * rewrites (current CPU, node, concurrency id) every time the thread is scheduled on another CPU.
     *
     * @return the area, or {@code null} when the thread registered none (address 0)
     * @throws NativeCallException EIO/EINVAL (kernel before 5.13), ESRCH (not stopped or not our tracee)
     */
    public static RseqArea rseqConfiguration(int tid) {
        NativeBlock block = new NativeBlock(RSEQ_CONFIGURATION_SIZE);
        long result = Native.LIBC.ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, RSEQ_CONFIGURATION_SIZE, block.address());
        if (result == -1) {
            int errno = Native.lastErrno();
            throw new NativeCallException("ptrace(PTRACE_GET_RSEQ_CONFIGURATION)", errno, "tid=" + tid);
        }
        // the accessors keep the block allocated until the kernel's answer is read
        long address = block.getLong(0);
        return address == 0 ? null : new RseqArea(tid, address, block.getInt(8));
    }

    /**
     * A thread's registered {@code struct rseq}: memory of the process that the kernel itself writes.
     *
     * @param tid     the thread
     * @param address where the struct is in the process
     * @param size    its registered size in bytes (20 or 32)
     */
    public record RseqArea(int tid, long address, int size) {
    }

    /**
     * {@code waitpid(tid, &status, options)}, retried on EINTR.
     *
     * @return the status; {@link WaitStatus#pid()} is 0 with {@link #WNOHANG} when nothing happened yet
     * @throws NativeCallException ECHILD (not our tracee / child), anything else
     */
    public static WaitStatus waitpid(int tid, int options) {
        NativeBlock block = new NativeBlock(4);
        Pointer status = block.pointer();
        while (true) {
            int pid = Native.LIBC.waitpid(tid, status, options);
            int errno = pid < 0 ? Native.lastErrno() : 0; // right after the call, same thread
            int raw = pid > 0 ? block.getInt(0) : 0;
            block.keepAlive(); // allocated until the kernel's write and our read are done, on every path
            if (pid >= 0) {
                return new WaitStatus(pid, raw);
            }
            if (errno != Errno.EINTR.value()) {
                throw new NativeCallException("waitpid", errno, "tid=" + tid + " options=0x" + Integer.toHexString(options));
            }
        }
    }

    /**
     * {@code kill(pid, signal)}; signal 0 only checks that the process exists and may be signalled.
     *
     * @throws NativeCallException ESRCH (no such process), EPERM (not allowed)
     */
    public static void kill(int pid, int signal) {
        if (Native.LIBC.kill(pid, signal) == -1) {
            int errno = Native.lastErrno();
            throw new NativeCallException("kill", errno, "pid=" + pid + " signal=" + signal);
        }
    }

    /**
     * A decoded {@code waitpid} status word.
     *
     * @param pid    the thread that changed state (0: none, with {@link #WNOHANG})
     * @param status the raw status word
     */
    public record WaitStatus(int pid, int status) {

        /** {@code WIFEXITED}: the thread exited normally. */
        public boolean exited() {
            return (status & 0x7f) == 0;
        }

        /** {@code WEXITSTATUS}. */
        public int exitCode() {
            return (status >> 8) & 0xff;
        }

        /** {@code WIFSIGNALED}: the thread was killed by a signal. */
        public boolean signaled() {
            int low = status & 0x7f;
            return low != 0 && low != 0x7f;
        }

        /** {@code WTERMSIG}. */
        public int termSignal() {
            return status & 0x7f;
        }

        /** {@code WIFSTOPPED}: the thread is in a stop (a ptrace stop for a tracee). */
        public boolean stopped() {
            return (status & 0xff) == 0x7f;
        }

        /** {@code WSTOPSIG}: the signal of a stop (SIGTRAP for an interrupt, the pending signal for a signal-delivery stop). */
        public int stopSignal() {
            return (status >> 8) & 0xff;
        }

        /** The {@code PTRACE_EVENT_*} of a stop ({@code status >> 16}), 0 for a signal-delivery stop. */
        public int event() {
            return (status >> 16) & 0xffff;
        }

        /** Gone for good: exited or killed. */
        public boolean terminated() {
            return exited() || signaled();
        }

        @Override
        public String toString() {
            if (pid == 0) {
                return "WaitStatus[no change]";
            }
            if (exited()) {
                return "WaitStatus[pid=" + pid + " exited code=" + exitCode() + "]";
            }
            if (signaled()) {
                return "WaitStatus[pid=" + pid + " killed signal=" + termSignal() + "]";
            }
            if (stopped()) {
                return "WaitStatus[pid=" + pid + " stopped signal=" + stopSignal() + " event=" + event() + "]";
            }
            return "WaitStatus[pid=" + pid + " status=0x" + Integer.toHexString(status) + "]";
        }
    }
}
