package io.pageflux.source.freeze;

import io.pageflux.nativeio.Ptrace;
import io.pageflux.source.sample.SampleProcess;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * A test target that is <em>not</em> a child of this JVM, so that it can be frozen with ptrace from here:
 * it runs under a small shell ({@code sh -c 'prog <&3 & echo pid=$!; wait'}), which is the child. (A
 * direct child cannot be ptrace-stopped by its own JVM: Java's process reaper would take the stop for
 * an exit.) Like {@link SampleProcess} it exits when this JVM dies (its stdin is our pipe).
 *
 * <p>{@link #sample} runs the sample target ({@code vtarget.c}) and knows its layout;
 * {@link #threads} runs the multi-threaded target ({@code threads.c}).
 */
public final class ForeignProcess implements AutoCloseable {

    public static final int SIGUSR1 = 10;
    public static final int SIGUSR2 = 12;

    private static Path vtarget;

    private final Process shell;
    private final int pid;
    private final BufferedReader stdout;
    private final String firstLine;
    private final Map<SampleProcess.Region, Long> addresses = new EnumMap<>(SampleProcess.Region.class);
    private long bulkPages;

    private ForeignProcess(Process shell, int pid, BufferedReader stdout, String firstLine) {
        this.shell = shell;
        this.pid = pid;
        this.stdout = stdout;
        this.firstLine = firstLine;
    }

    /** Starts {@code command} as a grandchild and reads its pid and its first line of output. */
    public static ForeignProcess start(List<String> command) throws IOException {
        List<String> argv = new ArrayList<>(List.of("/bin/sh", "-c",
                // fd 3 keeps our stdin for the background job (sh gives background jobs /dev/null otherwise)
                "exec 3<&0; \"$@\" <&3 3<&- & echo \"pid=$!\"; exec 3<&-; wait", "sh"));
        argv.addAll(command);
        Process shell = new ProcessBuilder(argv).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        BufferedReader out = new BufferedReader(new InputStreamReader(shell.getInputStream(), StandardCharsets.US_ASCII));
        int pid = -1;
        String first = null;
        while (pid < 0 || first == null) {
            String line = out.readLine();
            if (line == null) {
                shell.destroyForcibly();
                throw new IOException("target " + command + " ended before it was ready (pid=" + pid + ")");
            }
            if (pid < 0 && line.startsWith("pid=")) {
                pid = Integer.parseInt(line.substring(4).trim());
            } else if (first == null) {
                first = line;
            }
        }
        return new ForeignProcess(shell, pid, out, first);
    }

    /** The sample target ({@code vtarget}) with {@code bulkMib} MiB of region X; a writer keeps rewriting X. */
    public static ForeignProcess sample(long bulkMib, boolean writer) throws IOException {
        List<String> command = new ArrayList<>(List.of(vtarget().toString()));
        if (bulkMib > 0) {
            command.add("--bulk-mib");
            command.add(Long.toString(bulkMib));
        }
        if (writer) {
            command.add("--writer");
        }
        ForeignProcess p = start(command);
        for (String field : p.firstLine.trim().split(" ")) {
            String[] kv = field.split("=", 2);
            if (kv[0].equals("XPAGES")) {
                p.bulkPages = Long.parseLong(kv[1]);
            } else if (!kv[0].equals("SPAGES")) {
                String hex = kv[1].startsWith("0x") ? kv[1].substring(2) : kv[1];
                p.addresses.put(SampleProcess.Region.valueOf(kv[0]), hex.equals("(nil)") ? 0L : Long.parseUnsignedLong(hex, 16));
            }
        }
        return p;
    }

    /** The multi-threaded target ({@code threads.c}) with {@code workers} writer threads. */
    public static ForeignProcess threads(int workers, boolean spawn) throws IOException {
        List<String> command = new ArrayList<>(List.of(compile("threads.c", "-pthread").toString(), "--workers",
                Integer.toString(workers)));
        if (spawn) {
            command.add("--spawn");
        }
        ForeignProcess p = start(command);
        if (!p.firstLine.equals("ready")) {
            p.close();
            throw new IOException("threads target said '" + p.firstLine + "', expected 'ready'");
        }
        return p;
    }

    public int pid() {
        return pid;
    }

    public long address(SampleProcess.Region region) {
        return addresses.get(region);
    }

    public long bulkPages() {
        return bulkPages;
    }

    /**
     * Sample target: SIGUSR2 rewrites every 4th page of X; returns how many pages changed, once the target
     * is back in its {@code poll} (its answer is printed before stdio has finished with its buffers and
     * locks: a dump taken right after the answer could still see those pages change).
     */
    public long rewrite() throws IOException {
        signal(SIGUSR2);
        String line = readLine();
        if (line == null || !line.startsWith("rewrote ")) {
            throw new IOException("pid=" + pid + " answered '" + line + "', expected 'rewrote N'");
        }
        awaitPoll();
        return Long.parseLong(line.substring("rewrote ".length()).trim());
    }

    /** Waits (up to 5 s) until the target's main thread sleeps in {@code poll} ({@code /proc/PID/wchan}). */
    public void awaitPoll() throws IOException {
        Path wchan = Path.of("/proc", Integer.toString(pid), "wchan");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (!Files.readString(wchan).contains("poll")) {
            if (System.nanoTime() > deadline) {
                throw new IOException("pid=" + pid + " did not go back to poll within 5 s: wchan="
                        + Files.readString(wchan));
            }
            Thread.onSpinWait();
        }
    }

    public void signal(int signal) {
        Ptrace.kill(pid, signal);
    }

    /** The next line the target prints. */
    public String readLine() throws IOException {
        return stdout.readLine();
    }

    public boolean isAlive() {
        ProcTask.Stat stat = ProcTask.stat(pid);
        return shell.isAlive() && stat != null && !stat.exited();
    }

    /** SIGKILL now, and waits for it. */
    public void kill() {
        if (shell.isAlive()) {
            try {
                Ptrace.kill(pid, Ptrace.SIGKILL);
            } catch (RuntimeException gone) {
                // already exited
            }
        }
        waitShell();
    }

    @Override
    public void close() {
        try {
            shell.getOutputStream().close(); // EOF on its stdin: it exits
        } catch (IOException ignored) {
            // killed below instead
        }
        try {
            if (!shell.waitFor(5, TimeUnit.SECONDS)) {
                kill();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            kill();
        }
    }

    private void waitShell() {
        try {
            if (!shell.waitFor(5, TimeUnit.SECONDS)) {
                shell.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            shell.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public String toString() {
        return "ForeignProcess[pid=" + pid + " " + firstLine + "]";
    }

    /** The sample target binary, as {@link SampleProcess} compiled it (found through /proc/PID/exe). */
    static synchronized Path vtarget() throws IOException {
        if (vtarget == null) {
            try (SampleProcess s = SampleProcess.start()) {
                vtarget = Files.readSymbolicLink(Path.of("/proc", Integer.toString(s.pid()), "exe"));
            }
        }
        return vtarget;
    }

    /** Compiles a C source of the sample package once per content hash into {@code java.io.tmpdir}. */
    static synchronized Path compile(String source, String... flags) throws IOException {
        byte[] code;
        try (InputStream in = SampleProcess.class.getResourceAsStream(source)) {
            if (in == null) {
                throw new IOException(source + " is missing from the classpath (io/pageflux/source/sample)");
            }
            code = in.readAllBytes();
        }
        String hash;
        try {
            hash = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(code)).substring(0, 16);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        String name = source.replace(".c", "");
        Path dir = Path.of(System.getProperty("java.io.tmpdir"), "pageflux-" + name + "-" + hash);
        Path binary = dir.resolve(name);
        if (Files.isExecutable(binary)) {
            return binary;
        }
        Files.createDirectories(dir);
        Path c = dir.resolve(source);
        Files.write(c, code);
        Path tmp = dir.resolve(name + ".tmp" + ProcessHandle.current().pid());
        List<String> gcc = new ArrayList<>(List.of("gcc", "-O2", "-o", tmp.toString(), c.toString()));
        gcc.addAll(List.of(flags));
        Process p = new ProcessBuilder(gcc).redirectErrorStream(true).start();
        String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        try {
            if (p.waitFor() != 0) {
                throw new IOException("gcc could not compile " + c + ": " + output + " — install gcc");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted compiling " + c, e);
        }
        Files.move(tmp, binary, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        return binary;
    }
}
