package io.pageflux.source.freeze;

import io.pageflux.nativeio.Errno;
import io.pageflux.nativeio.NativeCallException;
import io.pageflux.nativeio.Ptrace;
import io.pageflux.source.PermissionDeniedException;
import io.pageflux.source.ProcessGoneException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.function.BiConsumer;

/**
 * Freezes every thread of one process with {@code PTRACE_SEIZE} + {@code PTRACE_INTERRUPT} and thaws it
 * with {@code PTRACE_DETACH}. Nothing is injected into the target and its parent sees nothing (a ptrace
 * stop is not a job-control stop).
 *
 * <p><b>How.</b> Each freeze runs on its own dedicated platform thread, because the kernel ties tracees to
 * the thread that attached them: that thread seizes and interrupts every thread listed in
 * {@code /proc/PID/task}, waits until each has stopped, then lists the threads again, because a thread
 * that was inside {@code clone()} may have created a new one meanwhile. It repeats until a listing shows
 * no new thread: then every thread is stopped and none can be created. The tracer thread then waits for
 * {@link FrozenProcess#thaw()}, detaches every thread (handing back any signal that arrived while the
 * thread was stopping) and ends.
 *
 * <p><b>Crash safety.</b> When the tracer thread or the whole JVM dies — {@code kill -9}, a crash, an
 * uncaught error — the kernel detaches its tracees and they run on. A failed freeze (a thread that does not
 * stop in time, a permission error) detaches what it had stopped and lets the tracer thread end, which
 * releases anything still seized. The target is never left stopped.
 *
 * <p><b>Limits.</b>
 * <ul>
 *   <li>A process that is already traced (a debugger, {@code strace}) cannot be seized:
 *       {@link AlreadyTracedException} names the tracer.</li>
 *   <li>A target that is a child of <em>this</em> JVM is refused with a {@link FreezeException}: the kernel
 *       reports a tracee's stops to every thread of the tracer's thread group, and the JVM's process reaper
 *       thread, blocked in {@code waitpid(child, 0)}, would collect the stop this freezer waits for and
 *       mark the child's {@link Process} dead with a bogus exit code. The JVM gives no way to keep the
 *       reaper off one child, so start such targets as grandchildren (a shell in between, as
 *       {@link io.pageflux.source.sample.DetachedProcess} does), or use {@link CgroupFreezer}.</li>
 *   <li>A thread in uninterruptible sleep ({@code D}) stops only when the sleep ends; a freeze gives
 *       up after {@link #withStopTimeout(Duration) the stop timeout} (default 10 s) and thaws.</li>
 * </ul>
 *
 * Immutable and thread-safe; each {@link #freeze()} is independent.
 */
public final class ThreadFreezer implements Freezer {

    /** Default time one thread may take to stop. */
    public static final Duration DEFAULT_STOP_TIMEOUT = Duration.ofSeconds(10);

    private final int pid;
    private final Duration stopTimeout;
    /** Test hook: called on the tracer thread after each listing of the threads, before seizing. */
    private final BiConsumer<Integer, List<Integer>> afterListing;

    private ThreadFreezer(int pid, Duration stopTimeout, BiConsumer<Integer, List<Integer>> afterListing) {
        this.pid = pid;
        this.stopTimeout = stopTimeout;
        this.afterListing = afterListing;
    }

    /** A freezer for {@code pid} with the default stop timeout. */
    public static ThreadFreezer of(int pid) {
        if (pid <= 0) {
            throw new IllegalArgumentException("pid must be positive: pid=" + pid);
        }
        return new ThreadFreezer(pid, DEFAULT_STOP_TIMEOUT, null);
    }

    /** A copy that gives each thread at most {@code timeout} to stop before the freeze fails. */
    public ThreadFreezer withStopTimeout(Duration timeout) {
        if (timeout.isNegative() || timeout.isZero()) {
            throw new IllegalArgumentException("stop timeout must be positive: " + timeout);
        }
        return new ThreadFreezer(pid, timeout, afterListing);
    }

    /** Tests: a copy that calls {@code hook(pass, tids)} on the tracer thread after each listing. */
    ThreadFreezer withAfterListing(BiConsumer<Integer, List<Integer>> hook) {
        return new ThreadFreezer(pid, stopTimeout, hook);
    }

    public int pid() {
        return pid;
    }

    @Override
    public String describe() {
        return "ptrace:" + pid;
    }

    /**
     * Runs the read-only parts of a freeze (listing threads, reading their status, a signal-0 probe, a
     * tracer thread) so that a first freeze in a fresh JVM stops the target only for the syscalls.
     */
    @Override
    public void prepare() {
        ProcTask.stat(pid);
        ProcTask.tracerPid(pid);
        for (int tid : ProcTask.threads(pid)) {
            ProcTask.threadStat(pid, tid);
        }
        try {
            Ptrace.kill(pid, 0);
            Ptrace.waitpid(-1, Ptrace.WALL | Ptrace.WNOHANG | WNOWAIT_REJECTED);
        } catch (NativeCallException e) {
            // ECHILD / ESRCH: only the classes and the native stubs were wanted
        }
        CompletableFuture<Void> done = new CompletableFuture<>();
        Thread t = new Thread(() -> done.complete(null), "pageflux-freezer-prepare");
        t.setDaemon(true);
        t.start();
        done.join();
        Ptrace.WaitStatus probe = new Ptrace.WaitStatus(pid, 0x857f);
        probe.stopped();
        probe.terminated();
        new Frozen(new Tracer(), 0).toString();
    }

    /**
     * {@code WNOWAIT}, which {@code waitpid} (wait4) rejects with EINVAL: the prepare probe exercises the
     * binding and can never reap a child of this JVM.
     */
    private static final int WNOWAIT_REJECTED = 0x01000000;

    /**
     * Stops every thread of the target, on a new dedicated tracer thread; blocks until they are all
     * stopped.
     *
     * @throws ProcessGoneException      no such process, or it exited while freezing
     * @throws AlreadyTracedException    another tracer holds the target
     * @throws PermissionDeniedException no permission to trace it (CAP_SYS_PTRACE, Yama ptrace_scope)
     * @throws FreezeException           a thread did not stop in time, or the target is a child of this JVM
     */
    @Override
    public FrozenProcess freeze() {
        ProcTask.Stat stat = ProcTask.stat(pid);
        if (stat == null) {
            throw new ProcessGoneException(pid, "reason=no-such-process file=/proc/" + pid
                    + "/stat is absent: check the pid (ps -p " + pid + ")");
        }
        if (stat.exited()) {
            throw new ProcessGoneException(pid, "comm=" + stat.comm() + " state=" + stat.state()
                    + ": the process has exited and cannot be frozen");
        }
        long self = ProcessHandle.current().pid();
        if (stat.ppid() == self) {
            throw new FreezeException(pid, "cannot freeze pid=" + pid + " with ptrace: it is a child of this JVM (pid="
                    + self + "), whose process reaper would take its ptrace stops for an exit; start the target"
                    + " from another process (e.g. through a shell: sh -c 'prog & wait', as"
                    + " io.pageflux.source.sample.DetachedProcess does), or use the cgroup freezer");
        }
        int tracer = ProcTask.tracerPid(pid);
        if (tracer > 0) {
            throw new AlreadyTracedException(pid, pid, tracer);
        }
        Tracer tracerTask = new Tracer();
        Thread thread = new Thread(tracerTask, "pageflux-freezer-" + pid);
        thread.setDaemon(true);
        thread.start();
        try {
            return tracerTask.frozen.get();
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof RuntimeException r) {
                throw r;
            }
            if (cause instanceof Error err) {
                throw err;
            }
            throw new FreezeException(pid, "freezing pid=" + pid + " failed: " + cause, cause);
        } catch (InterruptedException e) {
            // the tracer thread still completes; thaw whatever it froze
            Thread.currentThread().interrupt();
            tracerTask.frozen.thenAccept(FrozenProcess::thaw);
            throw new FreezeException(pid, "interrupted while freezing pid=" + pid + "; the target is being thawed", e);
        }
    }

    @Override
    public String toString() {
        return "ThreadFreezer[pid=" + pid + " stopTimeout=" + stopTimeout + "]";
    }

    /** The body of the dedicated tracer thread: freeze, wait for the thaw request, thaw, end. */
    private final class Tracer implements Runnable {
        final CompletableFuture<Frozen> frozen = new CompletableFuture<>();
        final CompletableFuture<Void> thawRequested = new CompletableFuture<>();
        final CompletableFuture<Long> thawed = new CompletableFuture<>();
        /** tid → signal to hand back on detach (0: none). Ordered for stable reports. */
        final Map<Integer, Integer> stopped = new TreeMap<>();
        final List<KernelWrittenArea> rseq = new ArrayList<>();
        final Set<Integer> gone = new HashSet<>();
        long started;
        int passes;
        /** This tracer thread's own tid: threads the kernel attached to it by itself show it as TracerPid. */
        int self;

        @Override
        public void run() {
            started = System.nanoTime();
            self = ownTid();
            try {
                stopAll();
                findRseqAreas();
            } catch (Throwable t) {
                detachAll();
                frozen.completeExceptionally(t);
                return; // ending this thread releases anything still seized
            }
            Frozen handle = new Frozen(this, System.nanoTime() - started);
            frozen.complete(handle);
            thawRequested.join();
            try {
                detachAll();
            } finally {
                thawed.complete(System.nanoTime());
            }
        }

        private void stopAll() {
            while (true) {
                passes++;
                List<Integer> tids = ProcTask.threads(pid);
                if (tids.isEmpty()) {
                    throw new ProcessGoneException(pid, "reason=exited-while-freezing dir=/proc/" + pid
                            + "/task is gone");
                }
                if (afterListing != null) {
                    afterListing.accept(passes, tids);
                }
                List<Integer> fresh = new ArrayList<>();
                for (int tid : tids) {
                    if (!stopped.containsKey(tid) && !gone.contains(tid) && seizeAndInterrupt(tid)) {
                        fresh.add(tid);
                    }
                }
                if (fresh.isEmpty()) {
                    break;
                }
                awaitStops(fresh);
            }
            if (stopped.isEmpty()) {
                throw new ProcessGoneException(pid, "reason=exited-while-freezing: every thread exited");
            }
        }

        /** Each stopped thread's {@code struct rseq}; a kernel without the request (before 5.13) has none to report. */
        private void findRseqAreas() {
            for (int tid : stopped.keySet()) {
                try {
                    Ptrace.RseqArea area = Ptrace.rseqConfiguration(tid);
                    if (area != null) {
                        rseq.add(new KernelWrittenArea(tid, area.address(), area.size(), "rseq"));
                    }
                } catch (NativeCallException e) {
                    if (e.errno() != Errno.ESRCH) {
                        return; // EIO / EINVAL: this kernel cannot tell
                    }
                }
            }
        }

        /** @return whether the thread must now be waited for (false: it was already gone) */
        private boolean seizeAndInterrupt(int tid) {
            try {
                Ptrace.seize(tid, 0);
            } catch (NativeCallException e) {
                if (e.errno() == Errno.ESRCH) {
                    gone.add(tid); // exited after the listing
                    return false;
                }
                if (e.errno() == Errno.EPERM) {
                    int tracer = tracerOf(tid);
                    if (tracer == self) {
                        // created by a thread we had seized: the kernel attached it to us already (it is born
                        // with a pending trap stop); interrupt it anyway and collect its stop like the others
                        interrupt(tid);
                        return true;
                    }
                    ProcTask.Stat thread = ProcTask.threadStat(pid, tid);
                    if (thread == null || thread.exited()) {
                        gone.add(tid); // exiting threads refuse to be traced with EPERM
                        return false;
                    }
                    if (tracer > 0) {
                        throw new AlreadyTracedException(pid, tid, tracer);
                    }
                    throw new PermissionDeniedException(pid, "tid=" + tid + " call=ptrace(PTRACE_SEIZE) errno=EPERM:"
                            + " run as root or grant CAP_SYS_PTRACE, and check /proc/sys/kernel/yama/ptrace_scope"
                            + " (0 or 1 lets a same-user ancestor trace; pageflux is not an ancestor)", e);
                }
                throw new FreezeException(pid, "cannot seize pid=" + pid + " tid=" + tid + ": " + e.getMessage(), e);
            }
            interrupt(tid);
            return true;
        }

        private void interrupt(int tid) {
            try {
                Ptrace.interrupt(tid);
            } catch (NativeCallException e) {
                if (e.errno() != Errno.ESRCH) {
                    throw new FreezeException(pid, "cannot interrupt pid=" + pid + " tid=" + tid + ": "
                            + e.getMessage(), e);
                }
                // it is exiting: waitpid collects (reaps) it
            }
        }

        private int tracerOf(int tid) {
            int tracer = ProcTask.tracerPid(pid);
            // a non-leader thread may have its own tracer (strace -p TID)
            return tracer > 0 || tid == pid ? tracer : ProcTask.threadTracerPid(pid, tid);
        }

        /**
         * Polls {@code waitpid(WNOHANG)} for the threads just interrupted, yielding the CPU in between
         * (the target needs it to reach its stop) and backing off to at most 1 ms. A blocking waitpid
         * would have no timeout.
         */
        private void awaitStops(List<Integer> waiting) {
            long deadline = System.nanoTime() + stopTimeout.toNanos();
            int round = 0;
            List<Integer> left = new ArrayList<>(waiting);
            while (!left.isEmpty()) {
                for (Iterator<Integer> it = left.iterator(); it.hasNext(); ) {
                    int tid = it.next();
                    Ptrace.WaitStatus status;
                    try {
                        status = Ptrace.waitpid(tid, Ptrace.WALL | Ptrace.WNOHANG);
                    } catch (NativeCallException e) {
                        if (e.errno() == Errno.ECHILD) {
                            gone.add(tid); // reaped or no longer ours: it is gone
                            it.remove();
                            continue;
                        }
                        throw new FreezeException(pid, "waiting for pid=" + pid + " tid=" + tid + " to stop failed: "
                                + e.getMessage(), e);
                    }
                    if (status.pid() == 0) {
                        continue;
                    }
                    if (status.terminated()) {
                        gone.add(tid);
                        it.remove();
                    } else if (status.stopped()) {
                        // event 0: a signal-delivery stop; the signal must be handed back on detach
                        stopped.put(tid, status.event() == 0 ? status.stopSignal() : 0);
                        it.remove();
                    }
                }
                if (left.isEmpty()) {
                    return;
                }
                if (System.nanoTime() - deadline > 0) {
                    StringBuilder states = new StringBuilder();
                    for (int tid : left) {
                        ProcTask.Stat s = ProcTask.threadStat(pid, tid);
                        states.append(states.isEmpty() ? "" : ",").append(tid).append(':')
                                .append(s == null ? '?' : s.state());
                    }
                    throw new FreezeException(pid, "pid=" + pid + " threads did not stop within " + stopTimeout
                            + ": tid:state=" + states + " (D = uninterruptible sleep, e.g. I/O or a vfork);"
                            + " the target was thawed; retry, or raise the stop timeout");
                }
                StopWait.pause(++round);
            }
        }

        /** Detaches every stopped thread; threads that died meanwhile are skipped. */
        private void detachAll() {
            for (Map.Entry<Integer, Integer> e : stopped.entrySet()) {
                try {
                    Ptrace.detach(e.getKey(), e.getValue());
                } catch (NativeCallException ex) {
                    // ESRCH: the thread was killed while stopped (SIGKILL ends a ptrace stop); nothing to resume
                }
            }
            stopped.clear();
        }
    }

    /** The handle of one freeze; thawing hands the request to the tracer thread and waits for it. */
    private final class Frozen implements FrozenProcess {
        private final Tracer tracer;
        private final List<Integer> threads;
        private final List<KernelWrittenArea> rseq;
        private final long latencyNanos;
        private final int passes;

        Frozen(Tracer tracer, long latencyNanos) {
            this.tracer = tracer;
            this.threads = List.copyOf(tracer.stopped.keySet());
            this.rseq = List.copyOf(tracer.rseq);
            this.latencyNanos = latencyNanos;
            this.passes = tracer.passes;
        }

        @Override
        public int pid() {
            return pid;
        }

        @Override
        public List<Integer> threads() {
            return threads;
        }

        @Override
        public List<KernelWrittenArea> kernelWritten() {
            return rseq;
        }

        /** How many listings of {@code /proc/PID/task} the freeze needed (more than 2: threads appeared). */
        int passes() {
            return passes;
        }

        @Override
        public Duration freezeLatency() {
            return Duration.ofNanos(latencyNanos);
        }

        @Override
        public Duration frozenTime() {
            Long end = tracer.thawed.getNow(null);
            return Duration.ofNanos((end == null ? System.nanoTime() : end) - tracer.started);
        }

        @Override
        public boolean isFrozen() {
            return !tracer.thawed.isDone();
        }

        @Override
        public Duration thaw() {
            tracer.thawRequested.complete(null);
            boolean interrupted = false;
            while (true) {
                try {
                    tracer.thawed.get();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true; // the thaw must finish: the target would stay stopped otherwise
                } catch (ExecutionException e) {
                    throw new FreezeException(pid, "thawing pid=" + pid + " failed: " + e.getCause(), e.getCause());
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
            return frozenTime();
        }

        @Override
        public String toString() {
            return "FrozenProcess[ptrace pid=" + pid + " threads=" + threads.size() + " passes=" + passes
                    + (isFrozen() ? " frozen" : " thawed") + " for " + frozenTime().toNanos() / 1000 + " us]";
        }
    }

    /** The calling thread's tid, from {@code /proc/thread-self} (a link like {@code 1234/task/1240}). */
    private static int ownTid() {
        try {
            String link = java.nio.file.Files.readSymbolicLink(java.nio.file.Path.of("/proc/thread-self")).toString();
            return Integer.parseInt(link.substring(link.lastIndexOf('/') + 1));
        } catch (java.io.IOException | RuntimeException e) {
            return -1;
        }
    }

    static int passesOf(FrozenProcess frozen) {
        return Objects.requireNonNull(frozen) instanceof Frozen f ? f.passes() : 0;
    }
}
