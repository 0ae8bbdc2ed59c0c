package io.pageflux.source;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * The few facts of {@code /proc/PID/stat} the live reader needs: the command name, the state
 * letter and the kernel's task flags (to recognise kernel threads and exited processes).
 */
record ProcStat(int pid, String comm, char state, long flags) {

    /** {@code PF_KTHREAD} from the kernel's {@code include/linux/sched.h}. */
    static final long PF_KTHREAD = 0x00200000L;

    /** The stat of {@code pid}, or {@code null} if there is no such process. */
    static ProcStat read(int pid) {
        Path file = Path.of("/proc", Integer.toString(pid), "stat");
        String text;
        try {
            text = readProcFile(file);
        } catch (NoSuchFileException e) {
            return null;
        } catch (IOException e) {
            // ESRCH while reading: the process vanished between the lookup and the read
            if (!Files.exists(file.getParent())) {
                return null;
            }
            throw new PagefluxException("cannot read file=" + file + " pid=" + pid + ": " + e.getMessage(), e);
        }
        return parse(pid, text);
    }

    /**
     * The whole text of a /proc file. Not {@code Files.readString}: /proc files report size 0 and
     * sysctl files answer EOF to a read at a non-zero offset, so the JDK's one-byte probe after an
     * empty first read truncates them (e.g. {@code /proc/sys/kernel/pid_max} reads as "3").
     */
    static String readProcFile(Path file) throws IOException {
        try (InputStream in = Files.newInputStream(file)) {
            return new String(in.readAllBytes(), StandardCharsets.ISO_8859_1);
        }
    }

    /** Parses a stat line; {@code comm} may contain spaces and parentheses, so split after the last ')'. */
    static ProcStat parse(int pid, String text) {
        int open = text.indexOf('(');
        int close = text.lastIndexOf(')');
        if (open < 0 || close < open) {
            throw new PagefluxException("unexpected /proc/" + pid + "/stat format: '" + text.strip() + "'");
        }
        String comm = text.substring(open + 1, close);
        // after ") ": field 3 state, 4 ppid, 5 pgrp, 6 session, 7 tty_nr, 8 tpgid, 9 flags
        String[] rest = text.substring(close + 1).trim().split(" ");
        if (rest.length < 7) {
            throw new PagefluxException("unexpected /proc/" + pid + "/stat format: '" + text.strip() + "'");
        }
        return new ProcStat(pid, comm, rest[0].charAt(0), Long.parseUnsignedLong(rest[6]));
    }

    boolean kernelThread() {
        return (flags & PF_KTHREAD) != 0;
    }

    /** Exited: a zombie waiting for its parent ({@code Z}) or dead ({@code X}); its memory is gone. */
    boolean exited() {
        return state == 'Z' || state == 'X';
    }

    /** Whether {@code pid} still exists with an address space (not exited). */
    static boolean alive(int pid) {
        ProcStat stat = read(pid);
        return stat != null && !stat.exited();
    }
}
