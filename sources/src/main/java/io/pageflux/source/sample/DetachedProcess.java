package io.pageflux.source.sample;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * A program started as a <em>grandchild</em> of this JVM, so that this JVM can freeze it with ptrace.
 *
 * <p><b>Why not a child.</b> The kernel reports a tracee's ptrace stops to every thread of the tracer's
 * thread group, and for a child also to its parent. Java's process reaper thread waits for each child
 * ({@code waitpid(pid, 0)}) and would collect the stop the freezer is waiting for, then declare the child
 * dead with a bogus exit code. So the program runs under a small shell that stays its parent:
 * <pre>  /bin/sh -c '"$@" &amp; echo "pid=$!"; wait $!' sh PROGRAM ARGS...   (plus fd juggling, see SCRIPT)</pre>
 * The shell is this JVM's child; it reaps the program when it ends and then exits with its status.
 *
 * <p><b>Lifecycle.</b> The program's stdin is a pipe from this JVM ({@link #stdin()}; the shell passes it on
 * through fd 3, since a non-interactive shell gives background jobs {@code /dev/null}). Programs meant to
 * run under this class exit when their stdin reaches EOF: on {@link #close()}, and — because the kernel
 * closes the pipe of a dead process — when this JVM dies, even by {@code kill -9}. Nothing is left behind.
 * Signals and {@link #kill()} go to the program through a {@link ProcessHandle}, which checks the process
 * start time, so a recycled pid is never hit.
 */
public final class DetachedProcess implements AutoCloseable {

    /**
     * fd 3: our stdin for the program; fd 4: our stderr for the program, while the shell's own stderr goes
     * to /dev/null (it would print "Killed" for a program ended by SIGKILL).
     */
    private static final String SCRIPT = "exec 3<&0 4>&2 2>/dev/null; \"$@\" <&3 2>&4 3<&- 4>&- & echo \"pid=$!\";"
            + " exec 3<&- 4>&-; wait $!";

    private final Process shell;
    private final int pid;
    /** The program, checked by start time; null if it had already ended when started. */
    private final ProcessHandle target;
    private final BufferedReader stdout;
    private final List<String> command;

    private DetachedProcess(Process shell, int pid, ProcessHandle target, BufferedReader stdout, List<String> command) {
        this.shell = shell;
        this.pid = pid;
        this.target = target;
        this.stdout = stdout;
        this.command = command;
    }

    /**
     * Starts {@code command} under {@code /bin/sh}; its stderr goes to this JVM's stderr. Returns once the
     * program's pid is known. Lines the program prints before the shell's {@code pid=} line (stdout is
     * shared) are kept and returned first by {@link #readLine()}.
     *
     * @throws IOException if the program (a path) is not executable, or the shell cannot be started or ends
     *                     before naming the program's pid
     */
    public static DetachedProcess start(List<String> command) throws IOException {
        if (command.isEmpty()) {
            throw new IllegalArgumentException("empty command");
        }
        // the shell would only report this on its stderr, after we have the pid of a subshell that fails
        if (command.get(0).contains("/") && !java.nio.file.Files.isExecutable(java.nio.file.Path.of(command.get(0)))) {
            throw new IOException("command=" + command + ": program=" + command.get(0) + " is not an executable file");
        }
        List<String> argv = new ArrayList<>(List.of("/bin/sh", "-c", SCRIPT, "sh"));
        argv.addAll(command);
        Process shell = new ProcessBuilder(argv).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        BufferedReader out = new BufferedReader(new InputStreamReader(shell.getInputStream(), StandardCharsets.US_ASCII));
        List<String> early = new ArrayList<>();
        int pid = -1;
        try {
            while (pid < 0) {
                String line = out.readLine();
                if (line == null) {
                    throw new IOException("command=" + command + " could not be started under /bin/sh (the shell"
                            + " exited with " + waitExit(shell) + " before naming its pid)");
                }
                if (line.startsWith("pid=")) {
                    try {
                        pid = Integer.parseInt(line.substring(4).trim());
                    } catch (NumberFormatException e) {
                        throw new IOException("command=" + command + ": the shell named no pid: '" + line + "'", e);
                    }
                } else {
                    early.add(line);
                }
            }
        } catch (IOException | RuntimeException e) {
            // leave nothing behind: the program ends when its stdin (our pipe) closes, the shell is killed
            try {
                shell.getOutputStream().close();
            } catch (IOException ignored) {
                // already closed
            }
            shell.destroyForcibly();
            throw e;
        }
        // empty: it already ended and the shell reaped it; its output and status are still there to read
        ProcessHandle handle = ProcessHandle.of(pid).orElse(null);
        BufferedReader reader = early.isEmpty() ? out : new PrefixedReader(early, out);
        return new DetachedProcess(shell, pid, handle, reader, List.copyOf(command));
    }

    /** The program's pid (not the shell's). */
    public int pid() {
        return pid;
    }

    /** The program's stdout, line by line; {@code null} at its end. */
    public String readLine() throws IOException {
        return stdout.readLine();
    }

    /** The program's stdin (closing it tells the program to exit). */
    public OutputStream stdin() {
        return shell.getOutputStream();
    }

    /** Whether the program still runs (a recycled pid does not count). */
    public boolean isAlive() {
        return target != null && target.isAlive() && shell.isAlive();
    }

    /**
     * The program's exit status once it ended and the shell reaped it (128 + signal when a signal killed
     * it), or empty while it runs.
     */
    public Optional<Integer> exitStatus() {
        return shell.isAlive() ? Optional.empty() : Optional.of(shell.exitValue());
    }

    /** SIGKILL now (even a stopped program dies), and waits until the shell reaped it. */
    public void kill() {
        if (target != null) {
            target.destroyForcibly();
        }
        awaitShell();
    }

    /**
     * Closes the program's stdin, so it exits by itself; if it has not after 5 s (it ignores its stdin,
     * or it is stopped), SIGKILL. Returns once the program is reaped.
     */
    @Override
    public void close() {
        try {
            shell.getOutputStream().close();
        } catch (IOException ignored) {
            // killed below instead
        }
        try {
            if (shell.waitFor(5, TimeUnit.SECONDS)) {
                return;
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        kill();
    }

    private void awaitShell() {
        try {
            if (!shell.waitFor(5, TimeUnit.SECONDS)) {
                // the program ignores SIGKILL (a D state that does not end); the shell at least must go
                shell.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            shell.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }

    /** The exit code of {@code process}, or -1 when interrupted while waiting (the interrupt is kept). */
    static int waitExit(Process process) {
        try {
            return process.waitFor();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return -1;
        }
    }

    @Override
    public String toString() {
        return "DetachedProcess[pid=" + pid() + " command=" + command + "]";
    }

    /** Returns some lines already read, then reads on. */
    private static final class PrefixedReader extends BufferedReader {
        private final List<String> lines;

        PrefixedReader(List<String> lines, BufferedReader rest) {
            super(rest);
            this.lines = new ArrayList<>(lines);
        }

        @Override
        public String readLine() throws IOException {
            return lines.isEmpty() ? super.readLine() : lines.remove(0);
        }
    }
}
