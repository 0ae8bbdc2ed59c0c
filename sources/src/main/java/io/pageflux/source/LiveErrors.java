package io.pageflux.source;

import io.pageflux.nativeio.Errno;
import io.pageflux.nativeio.NativeCallException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/** Turns a failed native call on a live target into pageflux's typed exceptions, with the facts and a remedy. */
final class LiveErrors {

    static final Path PTRACE_SCOPE = Path.of("/proc/sys/kernel/yama/ptrace_scope");
    /** Capability number of CAP_SYS_PTRACE ({@code include/uapi/linux/capability.h}). */
    static final int CAP_SYS_PTRACE = 19;

    private LiveErrors() {
    }

    /**
     * @param what    what was being done, e.g. {@code "while reading"}
     * @param address the target address the call started at, or -1 if none
     */
    static PagefluxException translate(int pid, String what, long address, NativeCallException e) {
        String where = address < 0 ? "" : String.format(" address=0x%x", address);
        Errno errno = e.errno();
        return switch (errno) {
            case ESRCH, ENOENT -> new ProcessGoneException(pid, what + where + " call=" + e.call()
                    + " errno=" + errno + ": the target exited; nothing more can be read", e);
            case EPERM, EACCES -> new PermissionDeniedException(pid, what + where + " call=" + e.call() + " errno="
                    + errno + ": " + permissionAdvice(), e);
            default -> new PagefluxException(String.format("cannot read target memory: pid=%d%s call=%s errno=%s: %s",
                    pid, where, e.call(), errnoName(e), e.getMessage()), e);
        };
    }

    private static String errnoName(NativeCallException e) {
        return e.errno() == Errno.UNKNOWN ? Integer.toString(e.errnoValue()) : e.errno().name();
    }

    /**
     * What is missing for ptrace-level access (process_vm_readv and /proc/PID/mem both need
     * PTRACE_MODE_ATTACH), as facts about this process plus what to change.
     */
    static String permissionAdvice() {
        Boolean cap = hasCapability(CAP_SYS_PTRACE);
        String scope = ptraceScope();
        StringBuilder sb = new StringBuilder("reading another process's memory needs ptrace access:");
        sb.append(" cap_sys_ptrace=").append(cap == null ? "unknown" : cap);
        sb.append(" ptrace_scope=").append(scope).append(" (").append(PTRACE_SCOPE).append(")");
        sb.append("; run as root or grant CAP_SYS_PTRACE (e.g. sudo setcap cap_sys_ptrace+ep \"$(readlink -f $(which java))\")");
        if (scope.equals("3")) {
            sb.append("; ptrace_scope=3 forbids all ptrace access until reboot, even for root");
        } else if (!scope.equals("0")) {
            sb.append(", or run as the target's own user with ptrace_scope=0 (sysctl kernel.yama.ptrace_scope=0)");
        } else {
            sb.append(", or run as the target's own user");
        }
        return sb.toString();
    }

    static String ptraceScope() {
        try {
            return ProcStat.readProcFile(PTRACE_SCOPE).strip();
        } catch (IOException e) {
            return "absent"; // no Yama LSM: only classic ptrace rules apply
        }
    }

    /** Whether this process's effective capability set has {@code cap}, or {@code null} if unknown. */
    static Boolean hasCapability(int cap) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"), StandardCharsets.US_ASCII)) {
                if (line.startsWith("CapEff:")) {
                    long mask = Long.parseUnsignedLong(line.substring("CapEff:".length()).trim(), 16);
                    return (mask & (1L << cap)) != 0;
                }
            }
        } catch (IOException | NumberFormatException e) {
            return null;
        }
        return null;
    }
}
