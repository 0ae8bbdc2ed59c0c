package io.pageflux.source.freeze;

import io.pageflux.source.ProcessGoneException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Objects;

/**
 * Freezes a whole cgroup v2 (a container, a systemd unit) by writing {@code 1} to its
 * {@code cgroup.freeze} and waiting until {@code cgroup.events} says {@code frozen 1}; thaws by writing
 * {@code 0}. Every process in the cgroup and its descendants stops, at once, without ptrace: it works
 * on a target that is already being debugged, and for processes that are children of this JVM.
 *
 * <p><b>Crash safety.</b> Unlike a ptrace stop, the kernel does not undo a cgroup freeze when the process
 * that wrote {@code 1} dies. So before freezing, pageflux starts a <em>watchdog</em>: a tiny
 * {@code /bin/sh} process ({@link #WATCHDOG_SCRIPT}) that blocks reading a pipe from this JVM. A normal
 * thaw writes {@code 0} itself, then tells the watchdog {@code thawed} and it exits without touching the
 * cgroup. If this JVM dies while the cgroup is frozen — {@code kill -9}, a crash, the OOM killer — the
 * kernel closes the pipe, the watchdog reads EOF and writes {@code 0} to {@code cgroup.freeze}. (A
 * shutdown hook also thaws on a normal exit or SIGTERM/SIGINT.) If the watchdog cannot be started, the
 * freeze is refused. The watchdog runs in this JVM's cgroup, which is never the frozen one.
 *
 * <p>A cgroup that was already frozen when {@link #freeze()} was called is left frozen at thaw: pageflux
 * only undoes what it did. A cgroup that holds this JVM is refused (it would freeze the dumper).
 */
public final class CgroupFreezer implements Freezer {

    /** Default time the whole cgroup may take to report {@code frozen 1}. */
    public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(10);

    /**
     * The watchdog ({@code sh -c SCRIPT pageflux-cgroup-watchdog DIR}): reads one line from its stdin, our
     * pipe; anything but {@code thawed} (EOF: this JVM died) thaws {@code DIR}. It ignores the signals a
     * terminal sends to the whole process group (Ctrl-C, Ctrl-\, hang-up) and SIGTERM, so that a signal
     * meant for the dumper (or its whole process group) does not kill the watchdog with it.
     */
    public static final String WATCHDOG_SCRIPT = "trap '' INT QUIT HUP TERM;"
            + " IFS= read -r said; [ \"$said\" = thawed ] && exit 0;"
            + " printf 0 > \"$1/cgroup.freeze\" && echo \"pageflux: the dumper died while cgroup dir=$1 was frozen:"
            + " the watchdog thawed it\" >&2";

    private final Path dir;
    private final int pid;
    private final Duration timeout;

    private CgroupFreezer(Path dir, int pid, Duration timeout) {
        this.dir = dir;
        this.pid = pid;
        this.timeout = timeout;
    }

    /**
     * A freezer for the cgroup v2 directory {@code dir} (e.g. {@code /sys/fs/cgroup/system.slice/app.service}).
     *
     * @throws FreezeException if {@code dir} has no {@code cgroup.freeze} (not cgroup v2, or the root cgroup)
     */
    public static CgroupFreezer of(Path dir) {
        Path abs = dir.toAbsolutePath().normalize();
        if (!Files.isRegularFile(abs.resolve("cgroup.freeze"))) {
            throw new FreezeException(0, "not a freezable cgroup v2 directory: dir=" + abs + " has no cgroup.freeze"
                    + " (a cgroup v1 hierarchy, the root cgroup, or not a cgroup at all); pass a non-root directory"
                    + " of the cgroup2 mount (mount -t cgroup2), e.g. the one in /proc/PID/cgroup");
        }
        return new CgroupFreezer(abs, 0, DEFAULT_TIMEOUT);
    }

    /**
     * A freezer for the cgroup v2 that {@code pid} belongs to (from {@code /proc/PID/cgroup} and the
     * cgroup2 mount in {@code /proc/self/mountinfo}).
     *
     * @throws ProcessGoneException no such process
     * @throws FreezeException      no cgroup2 mount, or the process is in the root cgroup
     */
    public static CgroupFreezer forPid(int pid) {
        String cgroupFile;
        try {
            cgroupFile = Files.readString(Path.of("/proc", Integer.toString(pid), "cgroup"), StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new ProcessGoneException(pid, "reason=no-such-process file=/proc/" + pid + "/cgroup is absent");
        } catch (IOException e) {
            throw new FreezeException(pid, "cannot read file=/proc/" + pid + "/cgroup: " + e.getMessage(), e);
        }
        String path = null;
        for (String line : cgroupFile.split("\n")) {
            if (line.startsWith("0::")) {
                path = line.substring(3);
            }
        }
        if (path == null) {
            throw new FreezeException(pid, "pid=" + pid + " is in no cgroup v2 (no '0::' line in /proc/" + pid
                    + "/cgroup): the cgroup freezer needs the unified hierarchy; use the ptrace freezer");
        }
        if (path.equals("/")) {
            throw new FreezeException(pid, "pid=" + pid + " is in the root cgroup v2, which cannot be frozen: move it"
                    + " into its own cgroup (mkdir /sys/fs/cgroup/NAME; echo " + pid + " > /sys/fs/cgroup/NAME/cgroup.procs)"
                    + " or use the ptrace freezer");
        }
        Path mount = cgroup2Mount(pid);
        CgroupFreezer f = of(mount.resolve(path.substring(1)));
        return new CgroupFreezer(f.dir, pid, f.timeout);
    }

    /** A copy that waits at most {@code timeout} for {@code frozen 1}. */
    public CgroupFreezer withTimeout(Duration timeout) {
        if (timeout.isNegative() || timeout.isZero()) {
            throw new IllegalArgumentException("timeout must be positive: " + timeout);
        }
        return new CgroupFreezer(dir, pid, timeout);
    }

    public Path directory() {
        return dir;
    }

    @Override
    public String describe() {
        return "cgroup:" + dir;
    }

    /**
     * Writes {@code 1} to {@code cgroup.freeze} and waits for {@code frozen 1} in {@code cgroup.events}.
     *
     * @throws FreezeException the cgroup holds this JVM, or it did not freeze in time (then it is thawed)
     */
    @Override
    public FrozenProcess freeze() {
        Path own = ownCgroup();
        if (own != null && (own.equals(dir) || own.startsWith(dir))) {
            throw new FreezeException(pid, "refusing to freeze cgroup dir=" + dir + ": this JVM (pid="
                    + ProcessHandle.current().pid() + ") is in it and would freeze itself; run pageflux outside the"
                    + " target's cgroup");
        }
        boolean wasFrozen = frozen();
        // started before the freeze: from the moment 1 is written, our death must thaw the cgroup
        Watchdog watchdog = wasFrozen ? null : Watchdog.start(dir, pid);
        long started = System.nanoTime();
        if (!wasFrozen) {
            try {
                write("1");
            } catch (FreezeException e) {
                watchdog.disarm();
                throw e;
            }
        }
        try {
            long deadline = started + timeout.toNanos();
            int round = 0;
            while (!frozen()) {
                if (System.nanoTime() - deadline > 0) {
                    throw new FreezeException(pid, "cgroup dir=" + dir + " did not report 'frozen 1' in cgroup.events"
                            + " within " + timeout + " (a task in uninterruptible sleep?); it was thawed; retry or raise"
                            + " the timeout");
                }
                StopWait.pause(++round);
            }
            long latency = System.nanoTime() - started;
            return new Frozen(started, latency, procs(), wasFrozen, watchdog);
        } catch (RuntimeException | Error e) {
            // no Frozen object will thaw it (cgroup.events or cgroup.procs unreadable, the wait timed out):
            // thaw now, so that a long-lived JVM does not leave the cgroup frozen
            if (!wasFrozen) {
                try {
                    write("0");
                    watchdog.disarm();
                } catch (RuntimeException thawFailed) {
                    e.addSuppressed(thawFailed); // the watchdog stays armed: it thaws when this JVM exits
                }
            }
            throw e;
        }
    }

    /** The watchdog process of one freeze; see the class comment. */
    private static final class Watchdog {
        private final Process process;

        private Watchdog(Process process) {
            this.process = process;
        }

        static Watchdog start(Path dir, int pid) {
            try {
                Process p = new ProcessBuilder("/bin/sh", "-c", WATCHDOG_SCRIPT, "pageflux-cgroup-watchdog", dir.toString())
                        .redirectOutput(ProcessBuilder.Redirect.DISCARD)
                        .redirectError(ProcessBuilder.Redirect.INHERIT)
                        .start();
                return new Watchdog(p);
            } catch (IOException e) {
                throw new FreezeException(pid, "not freezing cgroup dir=" + dir + ": its watchdog (/bin/sh, which thaws"
                        + " the cgroup if pageflux dies while it is frozen) could not be started: " + e.getMessage()
                        + "; use the ptrace freezer", e);
            }
        }

        /** After a thaw by us: the watchdog exits without writing. */
        void disarm() {
            try (var in = process.getOutputStream()) {
                in.write("thawed\n".getBytes(StandardCharsets.US_ASCII));
            } catch (IOException e) {
                // it is gone already (killed by someone): nothing to disarm
            }
        }

        long pid() {
            return process.pid();
        }
    }

    /** Whether {@code cgroup.events} says {@code frozen 1}. */
    public boolean frozen() {
        for (String line : read("cgroup.events").split("\n")) {
            if (line.equals("frozen 1")) {
                return true;
            }
        }
        return false;
    }

    private List<Integer> procs() {
        List<Integer> pids = new ArrayList<>();
        for (String line : read("cgroup.procs").split("\n")) {
            if (!line.isBlank()) {
                pids.add(Integer.parseInt(line.trim()));
            }
        }
        Collections.sort(pids);
        return pids;
    }

    private String read(String file) {
        try {
            return Files.readString(dir.resolve(file), StandardCharsets.US_ASCII);
        } catch (IOException e) {
            throw new FreezeException(pid, "cannot read file=" + dir.resolve(file) + ": " + e.getMessage()
                    + " (was the cgroup removed?)", e);
        }
    }

    private void write(String value) {
        Path file = dir.resolve("cgroup.freeze");
        try {
            Files.writeString(file, value, StandardCharsets.US_ASCII);
        } catch (IOException e) {
            throw new FreezeException(pid, "cannot write '" + value + "' to file=" + file + ": " + e.getMessage()
                    + " (needs root or delegation of the cgroup to this user)", e);
        }
    }

    private static Path ownCgroup() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/cgroup"))) {
                if (line.startsWith("0::")) {
                    return cgroup2Mount(-1).resolve(line.substring(3).substring(1)).normalize();
                }
            }
        } catch (IOException | FreezeException e) {
            return null;
        }
        return null;
    }

    /** The mount point of the cgroup2 file system, from {@code /proc/self/mountinfo}. */
    static Path cgroup2Mount(int pid) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
                // "36 25 0:30 / /sys/fs/cgroup/unified rw,... shared:9 - cgroup2 cgroup2 rw"
                int dash = line.indexOf(" - ");
                if (dash < 0) {
                    continue;
                }
                String[] after = line.substring(dash + 3).split(" ");
                if (after.length > 0 && after[0].equals("cgroup2")) {
                    String[] before = line.substring(0, dash).split(" ");
                    return Path.of(before[4].replace("\\040", " "));
                }
            }
        } catch (IOException e) {
            throw new FreezeException(pid, "cannot read /proc/self/mountinfo: " + e.getMessage(), e);
        }
        throw new FreezeException(pid, "no cgroup2 file system is mounted (see /proc/self/mountinfo): mount one with"
                + " 'mount -t cgroup2 none /sys/fs/cgroup' or use the ptrace freezer");
    }

    @Override
    public String toString() {
        return "CgroupFreezer[" + dir + "]";
    }

    private final class Frozen implements FrozenProcess {
        private final long started;
        private final long latencyNanos;
        private final List<Integer> procs;
        private final boolean wasFrozen;
        private final Watchdog watchdog;
        private final Thread hook;
        private volatile long thawedAt;

        Frozen(long started, long latencyNanos, List<Integer> procs, boolean wasFrozen, Watchdog watchdog) {
            this.started = started;
            this.latencyNanos = latencyNanos;
            this.procs = List.copyOf(procs);
            this.wasFrozen = wasFrozen;
            this.watchdog = watchdog;
            // a normal exit or SIGTERM/SIGINT while frozen must not leave the cgroup frozen
            this.hook = new Thread(this::thawQuietly, "pageflux-cgroup-thaw");
            if (!wasFrozen) {
                Runtime.getRuntime().addShutdownHook(hook);
            }
        }

        @Override
        public int pid() {
            return pid;
        }

        @Override
        public List<Integer> threads() {
            return procs;
        }

        @Override
        public Duration freezeLatency() {
            return Duration.ofNanos(latencyNanos);
        }

        @Override
        public Duration frozenTime() {
            long end = thawedAt;
            return Duration.ofNanos((end == 0 ? System.nanoTime() : end) - started);
        }

        @Override
        public boolean isFrozen() {
            return thawedAt == 0;
        }

        @Override
        public synchronized Duration thaw() {
            if (thawedAt == 0) {
                if (!wasFrozen) {
                    write("0"); // throws, leaving it frozen and the hook and the watchdog in place, if the write fails
                    watchdog.disarm();
                    try {
                        Runtime.getRuntime().removeShutdownHook(hook);
                    } catch (IllegalStateException shuttingDown) {
                        // called from the hook itself
                    }
                }
                thawedAt = System.nanoTime();
            }
            return frozenTime();
        }

        private void thawQuietly() {
            try {
                thaw();
            } catch (RuntimeException e) {
                System.err.println("pageflux: could not thaw cgroup " + dir + ": " + e.getMessage()
                        + "; run: echo 0 > " + dir.resolve("cgroup.freeze"));
            }
        }

        /** Tests: the watchdog's pid (0: none, the cgroup was frozen already). */
        long watchdogPid() {
            return watchdog == null ? 0 : watchdog.pid();
        }

        @Override
        public String toString() {
            return "FrozenProcess[cgroup " + dir + " procs=" + procs + (isFrozen() ? " frozen" : " thawed") + "]";
        }
    }

    /** Tests: the watchdog pid of a freeze by this class (0: none). */
    static long watchdogPid(FrozenProcess frozen) {
        return frozen instanceof Frozen f ? f.watchdogPid() : 0;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof CgroupFreezer c && c.dir.equals(dir) && c.pid == pid && c.timeout.equals(timeout);
    }

    @Override
    public int hashCode() {
        return Objects.hash(dir, pid, timeout);
    }
}
