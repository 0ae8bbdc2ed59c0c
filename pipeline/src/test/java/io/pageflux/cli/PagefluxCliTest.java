package io.pageflux.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.source.sample.SampleProcess;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The CLI end to end, in-process, against real sample processes: exit codes and messages for
 * every bad input of issue 2, dumps that work, and the demo.
 * Depends on: LiveProcess (reader), Smaps/CriuRegionPolicies/PageScan (scanner),
 * PageSinks/CriuImageSink/ImageDirectory (images).
 */
class PagefluxCliTest {

    @TempDir
    Path tmp;

    // ---- usage --------------------------------------------------------------------------------

    @Test
    void helpShowsExamplesAndExitCodes() {
        Cli.Result r = Cli.run("--help");
        assertEquals(0, r.exit(), r.toString());
        assertTrue(r.out().contains("Examples:"), r.out());
        assertTrue(r.out().contains("pageflux dump --pid 1234 --out /tmp/d1"), r.out());
        assertTrue(r.out().contains("pageflux inspect /tmp/d1"), r.out());
        assertTrue(r.out().contains("Exit codes:"), r.out());
        assertTrue(Pattern.compile("(?m)^\\s+0\\s+ok").matcher(r.out()).find(), r.out());
        assertTrue(Pattern.compile("(?m)^\\s+1\\s+the dump failed").matcher(r.out()).find(), r.out());
        assertTrue(Pattern.compile("(?m)^\\s+2\\s+bad usage or input").matcher(r.out()).find(), r.out());

        Cli.Result dumpHelp = Cli.run("dump", "--help");
        assertEquals(0, dumpHelp.exit());
        assertTrue(dumpHelp.out().contains("--policy=full|pre-dump"), dumpHelp.out());
        assertTrue(dumpHelp.out().contains("--to=URI"), dumpHelp.out());
    }

    @Test
    void usageErrorsExitWith2() {
        Cli.Result none = Cli.run();
        assertEquals(2, none.exit(), none.toString());
        assertTrue(none.err().contains("a command is required"), none.err());

        Cli.Result unknown = Cli.run("dump", "--pid", "1", "--out", tmp.resolve("x").toString(), "--bogus");
        assertEquals(2, unknown.exit(), unknown.toString());
        assertTrue(unknown.err().contains("Unknown option: '--bogus'"), unknown.err());

        Cli.Result noOutput = Cli.run("dump", "--pid", "1");
        assertEquals(2, noOutput.exit(), noOutput.toString());
        assertTrue(noOutput.err().contains("--out=DIR | --to=URI"), noOutput.err());

        Cli.Result both = Cli.run("dump", "--pid", "1", "--out", "/tmp/a", "--to", "null");
        assertEquals(2, both.exit(), both.toString());
        assertTrue(both.err().contains("mutually exclusive"), both.err());

        Cli.Result badSize = Cli.run("dump", "--pid", "1", "--to", "null", "--budget", "lots");
        assertEquals(2, badSize.exit(), badSize.toString());
        assertTrue(badSize.err().contains("not a size: 'lots'"), badSize.err());

        Cli.Result badScanner = Cli.run("dump", "--pid", "1", "--to", "null", "--scanner", "fast");
        assertEquals(2, badScanner.exit(), badScanner.toString());
        assertTrue(badScanner.err().contains("--scanner fast: unknown scanner; use auto, pagemap-scan or pagemap-file"),
                badScanner.err());

        Cli.Result badThreads = Cli.run("dump", "--pid", "1", "--to", "null", "--read-threads", "0");
        assertEquals(2, badThreads.exit(), badThreads.toString());
        assertTrue(badThreads.err().contains("--read-threads 0: use 1..16"), badThreads.err());

        Cli.Result badPolicy = Cli.run("dump", "--pid", "1", "--to", "null", "--policy", "most");
        assertEquals(2, badPolicy.exit(), badPolicy.toString());
        assertTrue(badPolicy.err().contains("--policy most: unknown policy; use full or pre-dump"), badPolicy.err());
    }

    // ---- bad input ----------------------------------------------------------------------------

    @Test
    void unknownPidIsBadInput() throws Exception {
        int pid = exitedPid();
        Path out = tmp.resolve("d1");
        Cli.Result r = Cli.run("dump", "--pid", Integer.toString(pid), "--out", out.toString());
        assertEquals(2, r.exit(), r.toString());
        assertTrue(r.err().startsWith("pageflux: process is gone: pid=" + pid), r.err());
        assertTrue(r.err().contains("ps -p " + pid), r.err());
        assertFalse(Files.exists(out), "output created for a pid that does not exist");
    }

    @Test
    void kernelThreadIsBadInput() {
        Path out = tmp.resolve("d1");
        Cli.Result r = Cli.run("dump", "--pid", "2", "--out", out.toString());
        assertEquals(2, r.exit(), r.toString());
        assertTrue(r.err().contains("pid=2"), r.err());
        assertTrue(r.err().contains("kernel thread"), r.err());
        assertFalse(Files.exists(out));
    }

    @Test
    void pidWeMayNotTraceIsBadInput() throws Exception {
        // a root JVM without CAP_SYS_PTRACE may not read a root process that has it (the kernel's
        // "caller's capabilities must cover the target's" rule), whatever the file permissions
        assumeTrue(Files.isExecutable(Path.of("/usr/bin/setpriv")), "setpriv (util-linux) is needed");
        assumeTrue(hasCapability(19), "the test JVM itself needs CAP_SYS_PTRACE to have something to drop");
        Path out = tmp.resolve("d1");
        try (SampleProcess sample = SampleProcess.start()) {
            Cli.Result r = Cli.runInChildJvm(List.of("/usr/bin/setpriv", "--bounding-set=-sys_ptrace",
                    "--inh-caps=-sys_ptrace"), "dump", "--pid", Integer.toString(sample.pid()), "--out", out.toString());
            assertEquals(2, r.exit(), r.toString());
            assertTrue(r.err().contains("may not trace the process"), r.err());
            assertTrue(r.err().contains("pid=" + sample.pid()), r.err());
            assertTrue(r.err().contains("CAP_SYS_PTRACE"), r.err());
            assertFalse(Files.exists(out));
            assertTrue(sample.isAlive());
        }
    }

    @Test
    void nonEmptyOutputIsRefusedUnlessForced() throws Exception {
        Path out = Files.createDirectory(tmp.resolve("d1"));
        Path mine = Files.writeString(out.resolve("notes.txt"), "my notes");
        try (SampleProcess sample = SampleProcess.start()) {
            String pid = Integer.toString(sample.pid());
            Cli.Result refused = Cli.run("dump", "--pid", pid, "--out", out.toString());
            assertEquals(2, refused.exit(), refused.toString());
            assertTrue(refused.err().contains("out=" + out + " exists and is not empty"), refused.err());
            assertTrue(refused.err().contains("--force"), refused.err());
            assertEquals("my notes", Files.readString(mine));

            Cli.Result forced = Cli.run("dump", "--pid", pid, "--out", out.toString(), "--force");
            assertEquals(0, forced.exit(), forced.toString());
            assertFalse(Files.exists(mine), "--force keeps the old contents");
            assertTrue(Files.exists(out.resolve("pagemap-" + pid + ".img")));
        }
    }

    @Test
    void outputThatIsAFileIsBadInput() throws Exception {
        Path file = Files.writeString(tmp.resolve("file"), "x");
        Cli.Result r = Cli.run("dump", "--pid", "1", "--out", file.toString());
        assertEquals(2, r.exit(), r.toString());
        assertTrue(r.err().contains("out=" + file + " exists and is not a directory"), r.err());

        Path under = file.resolve("d1");
        Cli.Result r2 = Cli.run("dump", "--pid", "1", "--out", under.toString());
        assertEquals(2, r2.exit(), r2.toString());
        assertTrue(r2.err().contains("out=" + under + " cannot be created"), r2.err());
        assertTrue(r2.err().contains("is not a directory"), r2.err());
    }

    @Test
    void unwritableOutputIsBadInput() throws Exception {
        Path mount = Files.createDirectory(tmp.resolve("ro"));
        try (Mount ignored = Mount.tmpfs(mount, "ro,size=64k")) {
            Path out = mount.resolve("d1");
            try (SampleProcess sample = SampleProcess.start()) {
                Cli.Result r = Cli.run("dump", "--pid", Integer.toString(sample.pid()), "--out", out.toString());
                assertEquals(2, r.exit(), r.toString());
                assertTrue(r.err().contains("out=" + out + " is not writable"), r.err());
                assertTrue(r.err().contains("Read-only file system"), r.err());
            }
            assertFalse(Files.exists(out));
        }
    }

    @Test
    void budgetBelowOneChunkIsBadInput() throws Exception {
        Path out = tmp.resolve("d1");
        try (SampleProcess sample = SampleProcess.start()) {
            Cli.Result r = Cli.run("dump", "--pid", Integer.toString(sample.pid()), "--out", out.toString(),
                    "--budget", "1M", "--chunk-size", "4M");
            assertEquals(2, r.exit(), r.toString());
            assertTrue(r.err().contains("budget 1 MiB is smaller than one chunk (4 MiB)"), r.err());
            assertTrue(r.err().contains("raise the budget"), r.err());
        }
        assertFalse(Files.exists(out));
    }

    @Test
    void targetExitingMidDumpFailsWithExit1AndLeavesNoDirectory() throws Exception {
        Path out = tmp.resolve("d1");
        try (SampleProcess sample = SampleProcess.start(64, false)) {
            CliEnvironment env = CliEnvironment.headless()
                    .withSinkDecorator(sink -> Cli.slow(sink, Duration.ofMillis(20), sample::kill));
            Cli.Result r = Cli.run(env, "dump", "--pid", Integer.toString(sample.pid()), "--out", out.toString(),
                    "--budget", "2M", "--chunk-size", "1M");
            assertEquals(1, r.exit(), r.toString());
            assertTrue(r.err().contains("dump of pid=" + sample.pid() + " failed"), r.err());
            assertTrue(r.err().contains("the target exited during the dump"), r.err());
            assertTrue(r.err().contains("nothing was left at out=" + out), r.err());
            assertFalse(sample.isAlive());
        }
        assertFalse(Files.exists(out));
        assertEquals(List.of(), list(tmp), "temporary output left behind");
    }

    @Test
    void fullDiskFailsWithExit1AndLeavesNothing() throws Exception {
        Path mount = Files.createDirectory(tmp.resolve("small"));
        try (Mount ignored = Mount.tmpfs(mount, "size=128k")) {
            Path out = mount.resolve("d1");
            try (SampleProcess sample = SampleProcess.start()) {
                Cli.Result r = Cli.run("dump", "--pid", Integer.toString(sample.pid()), "--out", out.toString());
                assertEquals(1, r.exit(), r.toString());
                assertTrue(r.err().contains("dump of pid=" + sample.pid() + " failed"), r.err());
                assertTrue(r.err().contains("No space left on device"), r.err());
                assertTrue(r.err().contains("nothing was left at out=" + out), r.err());
            }
            assertEquals(List.of(), list(mount), "a full disk left files behind");
        }
    }

    // ---- dumps that work ----------------------------------------------------------------------

    @Test
    void dumpWithJsonReportMatchesTheImages() throws Exception {
        Path out = tmp.resolve("d1");
        try (SampleProcess sample = SampleProcess.start()) {
            Cli.Result r = Cli.run("dump", "--pid", Integer.toString(sample.pid()), "--to", "dir:" + out, "--json",
                    "--budget", "1M", "--chunk-size", "64K");
            assertEquals(0, r.exit(), r.toString());
            assertEquals("", r.err());
            JsonNode json = Reports.JSON.readTree(r.out());
            ImageDirectory images = ImageDirectory.open(out).verify();
            assertEquals(sample.pid(), json.get("pid").asInt());
            assertEquals("full", json.get("kind").asText());
            assertEquals(images.presentPages(), json.at("/pages/dumped").asLong());
            assertEquals(images.pagesBytes(), json.get("bytesDumped").asLong());
            assertEquals(0, json.at("/pages/vanished").asLong());
            // A 64 + B 16 + C 16 + D 8, plus the C runtime's own pages
            assertTrue(json.at("/pages/dumped").asLong() >= 104, r.out());
            assertEquals(16, json.at("/buffers/capacity").asInt());
            assertTrue(json.at("/buffers/peakLeased").asInt() <= 16, r.out());
            long seen = json.at("/regions/seen").asLong();
            long skipped = 0;
            for (JsonNode n : json.at("/regions/skipped")) {
                skipped += n.asLong();
            }
            assertEquals(seen, json.at("/regions/dumped").asLong() + skipped, r.out());
            assertEquals("dir:" + out, json.at("/sinks/0/sink").asText());
            assertEquals(images.presentPages(), json.at("/sinks/0/pages").asLong());
            assertEquals(images.entries(), json.at("/sinks/0/entries").asLong());
        }
    }

    /**
     * Pages files are written with O_DIRECT unless --no-direct-io; a file system that refuses it
     * (ramfs) gets the page cache by itself. The images are complete either way.
     */
    @Test
    void directIoIsTheDefaultWithAnOptOutAndAFallback() throws Exception {
        Path ramfs = Files.createDirectory(tmp.resolve("ramfs"));
        try (SampleProcess sample = SampleProcess.start(); Mount ignored = Mount.ramfs(ramfs)) {
            String pid = Integer.toString(sample.pid());
            for (Path out : List.of(tmp.resolve("cached"), ramfs.resolve("fallback"))) {
                List<String> args = new java.util.ArrayList<>(List.of("dump", "--pid", pid, "--to", "dir:" + out,
                        "--json", "--budget", "1M", "--chunk-size", "64K"));
                if (out.endsWith("cached")) {
                    args.add("--no-direct-io");
                }
                Cli.Result r = Cli.run(args.toArray(String[]::new));
                assertEquals(0, r.exit(), r.toString());
                ImageDirectory images = ImageDirectory.open(out).verify();
                JsonNode json = Reports.JSON.readTree(r.out());
                assertEquals(images.pagesBytes(), json.get("bytesDumped").asLong(), out.toString());
                assertTrue(json.at("/pages/dumped").asLong() >= 104, r.out());
            }
        }
        for (String command : List.of("dump", "pre-dump", "migrate")) {
            Cli.Result help = Cli.run(command, "--help");
            assertTrue(help.out().contains("--no-direct-io"), command + ": " + help.out());
        }
    }

    @Test
    void eachScannerFindsTheSamePages() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            String pid = Integer.toString(sample.pid());
            long dumped = -1;
            for (String scanner : List.of("pagemap-scan", "pagemap-file", "auto")) {
                Cli.Result r = Cli.run("dump", "--pid", pid, "--to", "null", "--json", "--scanner", scanner);
                assertEquals(0, r.exit(), r.toString());
                JsonNode json = Reports.JSON.readTree(r.out());
                long pages = json.at("/pages/dumped").asLong();
                // A 64 + B 16 + C 16 + D 8, plus the C runtime's own pages
                assertTrue(pages >= 104, scanner + ": " + r.out());
                assertEquals(pages, json.at("/pages/planned").asLong(), scanner + ": " + r.out());
                if (dumped >= 0) {
                    assertEquals(dumped, pages, "--scanner " + scanner + " found other pages");
                }
                dumped = pages;
            }
        }
    }

    @Test
    void twoReadThreadsWriteTheSameImagesAsOne() throws Exception {
        try (SampleProcess sample = SampleProcess.start(16, false)) {
            String pid = Integer.toString(sample.pid());
            Path one = tmp.resolve("one");
            Path two = tmp.resolve("two");
            Cli.Result r1 = Cli.run("dump", "--pid", pid, "--out", one.toString());
            assertEquals(0, r1.exit(), r1.toString());
            Cli.Result r2 = Cli.run("dump", "--pid", pid, "--out", two.toString(), "--read-threads", "2");
            assertEquals(0, r2.exit(), r2.toString());
            ImageDirectory a = ImageDirectory.open(one).verify();
            ImageDirectory b = ImageDirectory.open(two).verify();
            assertTrue(a.presentPages() >= 16 * 256, "the 16 MiB bulk region was dumped: " + a.presentPages());
            assertEquals(a.presentPages(), b.presentPages());
            // the bulk region X, page by page (the rest of the target, its stack, may change between the dumps)
            long x = sample.address(SampleProcess.Region.X);
            assertEquals(16 * 256, bulkPages(b, x, sample), "X pages in the two-thread dump");
            assertEquals(16 * 256, bulkPages(a, x, sample), "X pages in the one-thread dump");
        }
    }

    /** Checks every page of X in {@code images} against the sample's bytes; returns how many there were. */
    private static long bulkPages(ImageDirectory images, long x, SampleProcess sample) throws IOException {
        long end = x + sample.bulkPages() * 4096;
        long seen = 0;
        for (var pm : images.pagemaps()) {
            for (var e : pm.entries()) {
                if (!e.present() || e.vaddr() >= end || e.end() <= x) {
                    continue;
                }
                java.nio.ByteBuffer bytes = images.readPages(pm, e);
                for (long p = 0; p < e.nrPages(); p++) {
                    long address = e.vaddr() + p * 4096;
                    if (address < x || address >= end) {
                        continue;
                    }
                    byte[] page = new byte[4096];
                    bytes.get((int) (p * 4096), page);
                    assertEquals(-1, java.util.Arrays.mismatch(
                            SampleProcess.expectedPage(SampleProcess.Region.X, (address - x) / 4096), page),
                            String.format("page 0x%x", address));
                    seen++;
                }
            }
        }
        return seen;
    }

    @Test
    void dumpToNullPrintsTheSummary() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            Cli.Result r = Cli.run("dump", "--pid", Integer.toString(sample.pid()), "--to", "null");
            assertEquals(0, r.exit(), r.toString());
            assertTrue(r.out().startsWith("dumped pid=" + sample.pid() + " to null in "), r.out());
            assertTrue(r.out().contains(" vanished"), r.out());
            assertTrue(Pattern.compile("buffers\\s+peak \\d+ of 16 leased").matcher(r.out()).find(), r.out());
            assertEquals("", r.err(), "no progress bar without a terminal");
        }
    }

    @Test
    void progressBarOnATerminalEndsAt100Percent() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            Cli.Result r = Cli.run(CliEnvironment.headless().withProgressTerminal(true), "dump", "--pid",
                    Integer.toString(sample.pid()), "--to", "null");
            assertEquals(0, r.exit(), r.toString());
            String last = r.err().substring(r.err().lastIndexOf('\r') + 1);
            assertTrue(last.matches("(?s)\\[#{28}\\] 100%  .* done\\s*\\n"), "last progress line: " + last);

            Cli.Result quiet = Cli.run(CliEnvironment.headless().withProgressTerminal(true), "dump", "--pid",
                    Integer.toString(sample.pid()), "--to", "null", "--no-progress");
            assertEquals(0, quiet.exit(), quiet.toString());
            assertEquals("", quiet.err());
        }
    }

    @Test
    void preDumpPolicySkipsProtNone() throws Exception {
        Path full = tmp.resolve("full");
        Path pre = tmp.resolve("pre");
        try (SampleProcess sample = SampleProcess.start()) {
            String pid = Integer.toString(sample.pid());
            assertEquals(0, Cli.run("dump", "--pid", pid, "--out", full.toString()).exit());
            Cli.Result r = Cli.run("dump", "--pid", pid, "--out", pre.toString(), "--policy", "pre-dump", "--json");
            assertEquals(0, r.exit(), r.toString());
            assertEquals("pre-dump", Reports.JSON.readTree(r.out()).get("kind").asText());
        }
        // C (16 PROT_NONE pages) is in the full dump only
        long difference = ImageDirectory.open(full).presentPages() - ImageDirectory.open(pre).presentPages();
        assertTrue(difference >= 16, "full minus pre-dump = " + difference);
        assertEquals(2, ImageDirectory.open(pre).inventory().orElseThrow().preDumpMode().orElseThrow());
    }

    // ---- demo ---------------------------------------------------------------------------------

    @Test
    void demoChecksEveryByteAndStopsTheSample() throws Exception {
        Path dir = tmp.resolve("pageflux-demo");
        Cli.Result r = Cli.run("demo", "--dir", dir.toString());
        assertEquals(0, r.exit(), r.toString());
        assertTrue(r.out().contains("result  OK"), r.out());
        assertTrue(r.out().contains("region A: 64 of 64 pages dumped, expected 64"), r.out());
        assertTrue(r.out().contains("region B: 16 of 32 pages dumped, expected 16"), r.out());
        assertTrue(r.out().contains("region C: 16 of 16 pages dumped, expected 16"), r.out());
        assertTrue(r.out().contains("region D:  8 of  8 pages dumped, expected  8"), r.out());
        assertTrue(r.out().contains("region E:  0 of  8 pages dumped, expected  0"), r.out());
        assertFalse(r.out().contains("PROBLEM"), r.out());
        Matcher m = Pattern.compile("sample pid=(\\d+)").matcher(r.out());
        assertTrue(m.find(), r.out());
        long pid = Long.parseLong(m.group(1));
        assertFalse(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false), "sample still running");
        assertTrue(ImageDirectory.open(dir).verify().presentPages() >= 104);

        // the pre-dumps: frozen by ptrace (the sample is no child of ours), the second writes only changed pages
        long xPages = DemoCommand.BULK_MIB * 256L;
        assertTrue(r.out().contains("sample  rewrote " + xPages / 4 + " of " + xPages + " pages of region X"), r.out());
        Matcher frozen = Pattern.compile("frozen ([0-9.]+) ms \\(ptrace:" + pid + ", 1 thread,").matcher(r.out());
        assertTrue(frozen.find() && frozen.find(), "each pre-dump states its ptrace freeze: " + r.out());
        Matcher second = Pattern.compile("pre-dump-2 +(\\d+) pages written, (\\d+) unchanged").matcher(r.out());
        assertTrue(second.find(), r.out());
        long written = Long.parseLong(second.group(1));
        assertTrue(written >= xPages / 4 && written <= xPages / 4 + 64, "the rewritten pages and a few others: " + written);
        assertTrue(Long.parseLong(second.group(2)) >= xPages * 3 / 4, r.out());
        assertTrue(r.out().contains("with the live sample: all equal"), r.out());
        ImageDirectory pre2 = ImageDirectory.open(dir.resolve("pre-dump-2")).verify();
        assertEquals(written, pre2.presentPages());
        assertEquals(dir.resolve("pre-dump-1").toRealPath(), pre2.parent().orElseThrow().toRealPath());

        // a second demo replaces the first one's images
        Cli.Result again = Cli.run("demo", "--dir", dir.toString());
        assertEquals(0, again.exit(), again.toString());
        Matcher m2 = Pattern.compile("sample pid=(\\d+)").matcher(again.out());
        assertTrue(m2.find());
        try (Stream<Path> files = Files.list(dir)) {
            assertTrue(files.anyMatch(f -> f.getFileName().toString().equals("pagemap-" + m2.group(1) + ".img")));
        }
        assertFalse(Files.exists(dir.resolve("pagemap-" + pid + ".img")), "the earlier demo's images remain");
    }

    @Test
    void demoKeepWaitsForEnterThenStops() {
        Path dir = tmp.resolve("demo");
        CliEnvironment env = CliEnvironment.headless()
                .withStdin(new ByteArrayInputStream("\n".getBytes(StandardCharsets.UTF_8)));
        Cli.Result r = Cli.run(env, "demo", "--dir", dir.toString(), "--keep");
        assertEquals(0, r.exit(), r.toString());
        assertTrue(r.out().contains("press Enter to stop it"), r.out());
        Matcher m = Pattern.compile("sample pid=(\\d+)").matcher(r.out());
        assertTrue(m.find());
        assertFalse(ProcessHandle.of(Long.parseLong(m.group(1))).map(ProcessHandle::isAlive).orElse(false));
    }

    @Test
    void demoRefusesADirectoryWithOtherFiles() throws Exception {
        Path dir = Files.createDirectory(tmp.resolve("mine"));
        Files.writeString(dir.resolve("thesis.tex"), "precious");
        Cli.Result r = Cli.run("demo", "--dir", dir.toString());
        assertEquals(2, r.exit(), r.toString());
        assertTrue(r.err().contains("dir=" + dir + " holds file=thesis.tex"), r.err());
        assertEquals("precious", Files.readString(dir.resolve("thesis.tex")));
    }

    // ---- helpers ------------------------------------------------------------------------------

    /** A pid that existed a moment ago and has exited and been reaped since. */
    static int exitedPid() throws Exception {
        Process p = new ProcessBuilder("true").start();
        p.waitFor();
        int pid = (int) p.pid();
        assumeTrue(!Files.exists(Path.of("/proc", Integer.toString(pid))), "pid reused at once");
        return pid;
    }

    static boolean hasCapability(int cap) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("CapEff:")) {
                return (Long.parseUnsignedLong(line.substring(7).trim(), 16) & (1L << cap)) != 0;
            }
        }
        return false;
    }

    static List<String> list(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).filter(n -> !n.equals("small") && !n.equals("ro")).sorted()
                    .toList();
        }
    }

    /** A tmpfs mounted for one test; the test is skipped where mounting is not allowed. */
    static final class Mount implements AutoCloseable {
        private final Path at;

        private Mount(Path at) {
            this.at = at;
        }

        static Mount tmpfs(Path at, String options) throws Exception {
            return mount(at, "tmpfs", options);
        }

        /** ramfs: refuses O_DIRECT (EINVAL at open). */
        static Mount ramfs(Path at) throws Exception {
            return mount(at, "ramfs", "mode=755");
        }

        private static Mount mount(Path at, String type, String options) throws Exception {
            Process p = new ProcessBuilder("mount", "-t", type, "-o", options, "pageflux-test", at.toString())
                    .redirectErrorStream(true).start();
            String output = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assumeTrue(p.waitFor() == 0, "cannot mount a " + type + " here (needs root): " + output);
            return new Mount(at);
        }

        @Override
        public void close() throws Exception {
            new ProcessBuilder("umount", "-l", at.toString()).inheritIO().start().waitFor();
        }
    }
}
