package io.pageflux.source.freeze;

import io.pageflux.source.PagefluxException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The facts of {@code /proc/PID[/task/TID]} the freezer needs: thread ids, the state letter, the parent,
 * the tracer and the start time. Every method answers {@code null} / an empty list when the process or
 * thread is gone, rather than throwing: threads come and go while a freezer looks at them.
 */
public final class ProcTask {

    /**
     * The kernel's {@code USER_HZ}: {@code /proc/PID/stat} times are in these clock ticks. It is 100 on
     * every Linux ABI pageflux runs on (x86_64, arm64), whatever the kernel's internal {@code HZ}.
     */
    public static final long CLOCK_TICKS_PER_SECOND = 100;

    private ProcTask() {
    }

    /**
     * One line of {@code /proc/PID/stat} (or {@code /proc/PID/task/TID/stat}).
     *
     * @param id            the pid or tid the line describes
     * @param comm          the command name
     * @param state         the state letter: {@code R S D T t Z X ...}; {@code t} is a ptrace stop
     * @param ppid          the parent's pid
     * @param startTicks    field 22: when the process started, in clock ticks since boot
     */
    public record Stat(int id, String comm, char state, int ppid, long startTicks) {

        /** Exited: a zombie ({@code Z}) or dead ({@code X}). */
        public boolean exited() {
            return state == 'Z' || state == 'X';
        }

        /** In a ptrace stop ({@code t}) or a job-control stop ({@code T}). */
        public boolean stopped() {
            return state == 't' || state == 'T';
        }

        /** The start time in microseconds since boot (the unit of the inventory's {@code dump_uptime}). */
        public long startMicros() {
            return startTicks * (1_000_000 / CLOCK_TICKS_PER_SECOND);
        }
    }

    /** The process's {@code stat}, or {@code null} if there is no such process. */
    public static Stat stat(int pid) {
        return parseStat(pid, read(Path.of("/proc", Integer.toString(pid), "stat")));
    }

    /** A thread's {@code stat}, or {@code null} if there is no such thread in {@code pid}. */
    public static Stat threadStat(int pid, int tid) {
        return parseStat(tid, read(Path.of("/proc", Integer.toString(pid), "task", Integer.toString(tid), "stat")));
    }

    /** Parses a stat line; {@code comm} may hold spaces and parentheses, so fields are split after the last ')'. */
    static Stat parseStat(int id, String text) {
        if (text == null) {
            return null;
        }
        int open = text.indexOf('(');
        int close = text.lastIndexOf(')');
        if (open < 0 || close < open) {
            throw new PagefluxException("unexpected stat format: pid=" + id + " line='" + text.strip() + "'");
        }
        // after ") ": field 3 state, 4 ppid, ..., 22 starttime (index 19)
        String[] rest = text.substring(close + 1).trim().split(" ");
        if (rest.length < 20) {
            throw new PagefluxException("unexpected stat format: pid=" + id + " fields=" + (rest.length + 2)
                    + " line='" + text.strip() + "'");
        }
        return new Stat(id, text.substring(open + 1, close), rest[0].charAt(0), Integer.parseInt(rest[1]),
                Long.parseLong(rest[19]));
    }

    /** The thread ids of {@code pid}, ascending; empty if the process is gone. */
    public static List<Integer> threads(int pid) {
        List<Integer> tids = new ArrayList<>();
        Path dir = Path.of("/proc", Integer.toString(pid), "task");
        try (DirectoryStream<Path> entries = Files.newDirectoryStream(dir)) {
            for (Path entry : entries) {
                tids.add(Integer.parseInt(entry.getFileName().toString()));
            }
        } catch (NoSuchFileException e) {
            return List.of();
        } catch (IOException e) {
            // ESRCH while listing: the process exited between open and read
            if (!Files.exists(dir)) {
                return List.of();
            }
            throw new PagefluxException("cannot list threads: pid=" + pid + " dir=" + dir + ": " + e.getMessage(), e);
        }
        Collections.sort(tids);
        return tids;
    }

    /**
     * {@code TracerPid} of {@code /proc/PID/status}: the <em>thread</em> id of the tracer, 0 when nobody
     * traces it, -1 when the process is gone. {@link #tgid(int)} turns it into the tracer's process id.
     */
    public static int tracerPid(int pid) {
        return statusField(Path.of("/proc", Integer.toString(pid), "status"), "TracerPid:", 0);
    }

    /** The same for one thread ({@code /proc/PID/task/TID/status}): a thread may have its own tracer. */
    public static int threadTracerPid(int pid, int tid) {
        return statusField(Path.of("/proc", Integer.toString(pid), "task", Integer.toString(tid), "status"),
                "TracerPid:", 0);
    }

    /** The process id ({@code Tgid}) a thread id belongs to; the tid itself when it cannot be read. */
    public static int tgid(int tid) {
        int tgid = statusField(Path.of("/proc", Integer.toString(tid), "status"), "Tgid:", tid);
        return tgid <= 0 ? tid : tgid;
    }

    private static int statusField(Path file, String key, int absent) {
        String status = read(file);
        if (status == null) {
            return -1;
        }
        for (String line : status.split("\n")) {
            if (line.startsWith(key)) {
                return Integer.parseInt(line.substring(key.length()).trim());
            }
        }
        return absent;
    }

    /** The first argument of {@code /proc/PID/cmdline} (the program), for messages; "" when unknown. */
    static String command(int pid) {
        String cmd = read(Path.of("/proc", Integer.toString(pid), "cmdline"));
        if (cmd == null) {
            return "";
        }
        int nul = cmd.indexOf('\0');
        return nul < 0 ? cmd : cmd.substring(0, nul);
    }

    private static String read(Path file) {
        try {
            return Files.readString(file, StandardCharsets.ISO_8859_1);
        } catch (NoSuchFileException e) {
            return null;
        } catch (IOException e) {
            // ESRCH: the task vanished while being read
            if (!Files.exists(file.getParent())) {
                return null;
            }
            throw new PagefluxException("cannot read file=" + file + ": " + e.getMessage(), e);
        }
    }
}
