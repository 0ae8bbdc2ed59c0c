package io.pageflux.source.sample;

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
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * A running copy of pageflux's sample target ({@code vtarget.c}): a small C process with the known
 * layout of the CRIU vectors (regions A–E, see {@link Region}) and optional bulk memory. Used by the
 * demo, the tests and the benchmarks. The C source ships in this jar and is compiled with the
 * machine's {@code gcc} on first use into {@code java.io.tmpdir}.
 *
 * <p>The process exits when this object is closed, and also by itself when the JVM dies (it
 * watches its stdin), so a crashed test never leaves it behind.
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

    public static final int PAGE = 4096;

    private final Process process;
    private final BufferedReader stdout;
    private final Map<Region, Long> addresses;
    private final long bulkPages;

    private SampleProcess(Process process, BufferedReader stdout, Map<Region, Long> addresses, long bulkPages) {
        this.process = process;
        this.stdout = stdout;
        this.addresses = addresses;
        this.bulkPages = bulkPages;
    }

    /** Starts the sample with only the A–E regions. */
    public static SampleProcess start() throws IOException {
        return start(0, false);
    }

    /**
     * @param bulkMib MiB of extra touched private memory (region X), 0 for none
     * @param writer  keep rewriting X while running
     */
    public static SampleProcess start(long bulkMib, boolean writer) throws IOException {
        Path binary = compiledBinary();
        List<String> command = new ArrayList<>(List.of(binary.toString()));
        if (bulkMib > 0) {
            command.add("--bulk-mib");
            command.add(Long.toString(bulkMib));
        }
        if (writer) {
            command.add("--writer");
        }
        Process process = new ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        BufferedReader out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.US_ASCII));
        String line = out.readLine();
        if (line == null) {
            process.destroyForcibly();
            throw new IOException("sample target " + binary + " exited before printing its layout (exit code "
                    + waitExit(process) + ")");
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
        return new SampleProcess(process, out, addresses, bulkPages);
    }

    public int pid() {
        return (int) process.pid();
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
        signal("USR1");
        expectLine("unmapped A");
    }

    /** Sends SIGUSR2 (rewrite every 4th page of X) and returns how many pages changed. */
    public long rewrite() throws IOException {
        signal("USR2");
        String line = expectLine("rewrote ");
        return Long.parseLong(line.substring("rewrote ".length()).trim());
    }

    private void signal(String name) throws IOException {
        try {
            Process kill = new ProcessBuilder("kill", "-" + name, Long.toString(process.pid())).inheritIO().start();
            if (kill.waitFor() != 0) {
                throw new IOException("kill -" + name + " " + process.pid() + " failed");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while signalling pid=" + process.pid(), e);
        }
    }

    private String expectLine(String prefix) throws IOException {
        String line = stdout.readLine();
        if (line == null || !line.startsWith(prefix)) {
            throw new IOException("sample pid=" + process.pid() + " answered '" + line + "', expected '" + prefix + "...'");
        }
        return line;
    }

    public boolean isAlive() {
        return process.isAlive();
    }

    /** Kills the target at once (SIGKILL), e.g. to test a target dying mid-dump. */
    public void kill() {
        process.destroyForcibly();
        waitExit(process);
    }

    @Override
    public void close() {
        try {
            process.getOutputStream().close();
        } catch (IOException ignored) {
            // it exits on SIGTERM below as well
        }
        process.destroy();
        try {
            if (!process.waitFor(5, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }

    private static int waitExit(Process process) {
        try {
            return process.waitFor();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return -1;
        }
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
        Process gcc = new ProcessBuilder("gcc", "-O2", "-o", tmp.toString(), c.toString())
                .redirectErrorStream(true).start();
        String output = new String(gcc.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        int code = waitExit(gcc);
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
