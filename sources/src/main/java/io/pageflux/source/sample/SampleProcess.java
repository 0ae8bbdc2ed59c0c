package io.pageflux.source.sample;

import io.pageflux.nativeio.Ptrace;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * A running copy of pageflux's sample target ({@code vtarget.c}): a small C process with the known
 * layout of the CRIU vectors (regions A–E, see {@link Region}), optional bulk memory and optional extra
 * threads. Used by the demo, the tests and the benchmarks. The C source ships in this jar and is
 * compiled with the machine's {@code gcc} on first use into {@code java.io.tmpdir}.
 *
 * <p>The sample is <b>not a child of this JVM</b> but a grandchild ({@link DetachedProcess}), so this JVM
 * can freeze it with ptrace ({@code ThreadFreezer} refuses its own children: Java's process reaper would
 * steal their ptrace stops). It exits when this object is closed, and also by itself when the JVM dies
 * (it watches its stdin, a pipe from this JVM), so a crashed test never leaves it behind.
 */
public final class SampleProcess implements AutoCloseable {

    /** The sample's regions; see {@code vtarget.c} for the contents. */
    public enum Region {
        A(64), B(32), C(16), D(8), E(8), X(0), S(0);

        private final int pages;

        Region(int pages) {
            this.pages = pages;
        }

        /** Page count (X: see {@link SampleProcess#bulkPages()}). */
        public int pages() {
            return pages;
        }
    }

    /**
     * What to start: extra memory and threads. Immutable.
     *
     * @param bulkMib MiB of extra touched private memory (region X), 0 for none
     * @param writer  keep rewriting every 64th page of X while running
     * @param threads worker threads besides the main thread, each writing to a counter of its own (0–64)
     * @param spawn   one more thread that keeps creating short-lived threads (threads appear while freezing)
     */
    public record Options(long bulkMib, boolean writer, int threads, boolean spawn) {
        public Options {
            if (bulkMib < 0 || threads < 0 || threads > 64) {
                throw new IllegalArgumentException("sample options out of range: bulkMib=" + bulkMib + " (>= 0) threads="
                        + threads + " (0-64)");
            }
        }

        /** Regions A–E only, one thread. */
        public static Options defaults() {
            return new Options(0, false, 0, false);
        }

        public Options withBulkMib(long mib) {
            return new Options(mib, writer, threads, spawn);
        }

        public Options withWriter(boolean writer) {
            return new Options(bulkMib, writer, threads, spawn);
        }

        public Options withThreads(int threads) {
            return new Options(bulkMib, writer, threads, spawn);
        }

        public Options withSpawner(boolean spawn) {
            return new Options(bulkMib, writer, threads, spawn);
        }

        List<String> arguments() {
            List<String> args = new ArrayList<>();
            if (bulkMib > 0) {
                args.addAll(List.of("--bulk-mib", Long.toString(bulkMib)));
            }
            if (writer) {
                args.add("--writer");
            }
            if (threads > 0) {
                args.addAll(List.of("--threads", Integer.toString(threads)));
            }
            if (spawn) {
                args.add("--spawn");
            }
            return args;
        }
    }

    public static final int PAGE = 4096;
    /** Signal numbers (x86_64) for {@link #signal}. */
    public static final int SIGUSR1 = 10;
    public static final int SIGUSR2 = 12;
    public static final int SIGKILL = 9;

    private final DetachedProcess process;
    private final Map<Region, Long> addresses;
    private final long bulkPages;

    private SampleProcess(DetachedProcess process, Map<Region, Long> addresses, long bulkPages) {
        this.process = process;
        this.addresses = addresses;
        this.bulkPages = bulkPages;
    }

    /** Starts the sample with only the A–E regions. */
    public static SampleProcess start() throws IOException {
        return start(Options.defaults());
    }

    /**
     * @param bulkMib MiB of extra touched private memory (region X), 0 for none
     * @param writer  keep rewriting X while running
     */
    public static SampleProcess start(long bulkMib, boolean writer) throws IOException {
        return start(Options.defaults().withBulkMib(bulkMib).withWriter(writer));
    }

    /** Starts the sample as {@code options} say; returns once it has printed its layout. */
    public static SampleProcess start(Options options) throws IOException {
        Path binary = compiledBinary();
        List<String> command = new ArrayList<>(List.of(binary.toString()));
        command.addAll(options.arguments());
        DetachedProcess process = DetachedProcess.start(command);
        String line;
        try {
            line = process.readLine();
        } catch (IOException e) {
            process.kill();
            throw e;
        }
        if (line == null) {
            process.kill();
            throw new IOException("sample target " + binary + " exited before printing its layout (exit status "
                    + process.exitStatus().map(String::valueOf).orElse("?") + ")");
        }
        Map<Region, Long> addresses = new LinkedHashMap<>();
        long bulkPages = 0;
        for (String field : line.trim().split(" ")) {
            String[] kv = field.split("=", 2);
            if (kv[0].equals("XPAGES")) {
                bulkPages = Long.parseLong(kv[1]);
            } else if (kv[0].equals("SPAGES")) {
                continue;
            } else {
                String hex = kv[1].startsWith("0x") ? kv[1].substring(2) : kv[1];
                addresses.put(Region.valueOf(kv[0]), hex.equals("(nil)") ? 0L : Long.parseUnsignedLong(hex, 16));
            }
        }
        return new SampleProcess(process, addresses, bulkPages);
    }

    public int pid() {
        return process.pid();
    }

    public long address(Region region) {
        return addresses.get(region);
    }

    public long bulkPages() {
        return bulkPages;
    }

    /** The bytes region {@code region}'s page {@code page} holds as written at start (A–D; X generation 0). */
    public static byte[] expectedPage(Region region, long page) {
        byte[] bytes = new byte[PAGE];
        switch (region) {
            case A -> {
                for (int i = 0; i < PAGE; i++) {
                    long offset = page * PAGE + i;
                    bytes[i] = (byte) (((offset / PAGE) * 7 + (offset % 251)) & 0xff);
                }
            }
            case B -> java.util.Arrays.fill(bytes, page % 2 == 0 ? (byte) (0xA0 + page) : 0);
            case C -> java.util.Arrays.fill(bytes, (byte) 0x5C);
            case D -> java.util.Arrays.fill(bytes, (byte) 0xD5);
            case E, S -> { }
            case X -> {
                java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(bytes).order(java.nio.ByteOrder.LITTLE_ENDIAN);
                for (int w = 0; w < PAGE / 8; w++) {
                    b.putLong(page * 0x9E3779B97F4A7C15L + w);
                }
            }
            default -> throw new IllegalArgumentException(region.name());
        }
        return bytes;
    }

    /** Sends SIGUSR1 (unmap A) and waits until the target confirms. */
    public void unmapA() throws IOException {
        signal(SIGUSR1);
        expectLine("unmapped A");
    }

    /**
     * Sends SIGUSR2 (rewrite every 4th page of X) and returns how many pages changed, once the target is
     * back in its {@code poll}: it prints its answer before stdio has finished with its buffers and locks,
     * so a dump taken right after the answer could still see those pages change.
     */
    public long rewrite() throws IOException {
        signal(SIGUSR2);
        String line = expectLine("rewrote ");
        awaitPoll();
        return Long.parseLong(line.substring("rewrote ".length()).trim());
    }

    /**
     * Makes the main thread create one more worker thread (a command on the sample's stdin) and returns
     * its tid once it runs.
     */
    public int spawnThread() throws IOException {
        process.stdin().write('t');
        process.stdin().flush();
        String line = expectLine("spawned ");
        int tid = Integer.parseInt(line.substring("spawned ".length()).trim());
        if (tid <= 0) {
            throw new IOException("sample pid=" + pid() + " runs 64 workers already: no thread spawned");
        }
        return tid;
    }

    /** Waits (up to 5 s) until the sample's main thread sleeps in {@code poll} ({@code /proc/PID/wchan}). */
    public void awaitPoll() throws IOException {
        Path wchan = Path.of("/proc", Integer.toString(pid()), "wchan");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (!Files.readString(wchan).contains("poll")) {
            if (System.nanoTime() > deadline) {
                throw new IOException("sample pid=" + pid() + " did not go back to poll within 5 s: wchan="
                        + Files.readString(wchan));
            }
            Thread.onSpinWait();
        }
    }

    /** Sends signal number {@code signal} ({@link #SIGUSR1}, ...) to the sample. */
    public void signal(int signal) {
        Ptrace.kill(pid(), signal);
    }

    /** The next line the sample prints (after its layout line), e.g. the answer to a {@link #signal}. */
    public String readLine() throws IOException {
        return process.readLine();
    }

    private String expectLine(String prefix) throws IOException {
        String line = process.readLine();
        if (line == null || !line.startsWith(prefix)) {
            throw new IOException("sample pid=" + pid() + " answered '" + line + "', expected '" + prefix + "...'");
        }
        return line;
    }

    public boolean isAlive() {
        return process.isAlive();
    }

    /** Kills the target at once (SIGKILL), e.g. to test a target dying mid-dump, and waits until it is gone. */
    public void kill() {
        process.kill();
    }

    /** Stops the sample (EOF on its stdin, SIGKILL if it has not exited after 5 s) and waits until it is gone. */
    @Override
    public void close() {
        process.close();
    }

    /**
     * The compiled sample binary, e.g. to start it as a direct child of this JVM for a test of what a
     * direct child cannot do.
     */
    public static Path binary() throws IOException {
        return compiledBinary();
    }

    /** Compiles vtarget.c once per content hash; the binary lands in {@code java.io.tmpdir}. */
    static synchronized Path compiledBinary() throws IOException {
        byte[] source;
        try (InputStream in = SampleProcess.class.getResourceAsStream("vtarget.c")) {
            if (in == null) {
                throw new IOException("vtarget.c is missing from the classpath");
            }
            source = in.readAllBytes();
        }
        String hash;
        try {
            hash = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(source)).substring(0, 16);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        Path dir = Path.of(System.getProperty("java.io.tmpdir"), "pageflux-vtarget-" + hash);
        Path binary = dir.resolve("vtarget");
        if (Files.isExecutable(binary)) {
            return binary;
        }
        Files.createDirectories(dir);
        Path c = dir.resolve("vtarget.c");
        Files.write(c, source);
        Path tmp = dir.resolve("vtarget.tmp" + ProcessHandle.current().pid());
        Process gcc = new ProcessBuilder("gcc", "-O2", "-pthread", "-o", tmp.toString(), c.toString())
                .redirectErrorStream(true).start();
        String output = new String(gcc.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        int code = DetachedProcess.waitExit(gcc);
        if (code != 0) {
            throw new IOException("gcc could not compile the sample target " + c + " (exit " + code + "): " + output
                    + " — install gcc (apt-get install gcc)");
        }
        Files.move(tmp, binary, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        return binary;
    }

    /** A hex dump of the expected layout, for messages. */
    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("SampleProcess[pid=" + pid());
        addresses.forEach((r, a) -> sb.append(' ').append(r).append("=0x").append(Long.toHexString(a)));
        return sb.append(']').toString();
    }
}
