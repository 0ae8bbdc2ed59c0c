package io.pageflux.source.freeze;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.pageflux.source.sample.SampleProcess;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CgroupFreezerTest {

    @Test
    void freezesEveryProcessOfACgroupAndThawsIt() throws Exception {
        Path mount = cgroup2Mount();
        Path dir = mount.resolve("pageflux-test-" + ProcessHandle.current().pid() + "-" + System.nanoTime());
        try {
            Files.createDirectory(dir);
        } catch (IOException e) {
            assumeTrue(false, "cannot create a cgroup under " + mount + ": " + e);
        }
        try (SampleProcess target = SampleProcess.start(1, true)) {
            int pid = target.pid();
            Path home = mount.resolve(ownCgroupPath(pid));
            Files.writeString(dir.resolve("cgroup.procs"), Integer.toString(pid));
            try {
                CgroupFreezer freezer = CgroupFreezer.forPid(pid);
                assertEquals(dir, freezer.directory());
                assertEquals("cgroup:" + dir, freezer.describe());
                try (FrozenProcess frozen = freezer.freeze()) {
                    assertTrue(freezer.frozen());
                    assertTrue(Files.readString(dir.resolve("cgroup.events")).contains("frozen 1"));
                    assertEquals(List.of(pid), frozen.threads());
                    // the writer polls every millisecond: frozen, it does not even get scheduled
                    long before = contextSwitches(pid);
                    Thread.sleep(50);
                    assertEquals(before, contextSwitches(pid), "no context switch while frozen");
                    assertTrue(frozen.isFrozen());
                }
                assertFalse(freezer.frozen());
                long after = contextSwitches(pid);
                ThreadFreezerTest.waitUntil(() -> contextSwitches(pid) > after);
                assertTrue(target.isAlive());
            } finally {
                Files.writeString(home.resolve("cgroup.procs"), Integer.toString(pid));
            }
        } finally {
            Files.deleteIfExists(dir);
        }
    }

    @Test
    void aCgroupFrozenByADumperThatIsKilledIsThawedByTheWatchdog() throws Exception {
        Path dir = throwAwayCgroup();
        try (SampleProcess target = SampleProcess.start(1, true)) {
            int pid = target.pid();
            Path home = cgroup2Mount().resolve(ownCgroupPath(pid));
            Files.writeString(dir.resolve("cgroup.procs"), Integer.toString(pid));
            Process holder = new ProcessBuilder(FreezeHolder.cgroupCommand(dir))
                    .redirectError(ProcessBuilder.Redirect.INHERIT).start();
            try {
                String line = new BufferedReader(new InputStreamReader(holder.getInputStream(), StandardCharsets.US_ASCII))
                        .readLine();
                assertTrue(line != null && line.startsWith("frozen pid=" + holder.pid()), "the holder said: " + line);
                assertTrue(Files.readString(dir.resolve("cgroup.events")).contains("frozen 1"));
                assertEquals("1", Files.readString(dir.resolve("cgroup.freeze")).trim());
                List<ProcessHandle> watchdogs = holder.children().filter(CgroupFreezerTest::isWatchdog).toList();
                assertEquals(1, watchdogs.size(), "one watchdog, a child of the dumper");

                holder.destroyForcibly(); // SIGKILL while frozen: no thaw, no shutdown hook runs
                assertTrue(holder.waitFor(10, TimeUnit.SECONDS));
                assertEquals(137, holder.exitValue());
                ThreadFreezerTest.waitUntil(() -> read(dir.resolve("cgroup.events")).contains("frozen 0"));
                assertEquals("0", Files.readString(dir.resolve("cgroup.freeze")).trim(), "the watchdog wrote 0");
                ThreadFreezerTest.waitUntil(() -> !watchdogs.get(0).isAlive());
                long switches = contextSwitches(pid);
                ThreadFreezerTest.waitUntil(() -> contextSwitches(pid) > switches);
                assertTrue(target.isAlive());
            } finally {
                holder.destroyForcibly();
                Files.writeString(dir.resolve("cgroup.freeze"), "0");
                Files.writeString(home.resolve("cgroup.procs"), Integer.toString(pid));
            }
        } finally {
            Files.deleteIfExists(dir);
        }
    }

    @Test
    void afterANormalThawTheWatchdogExitsWithoutTouchingTheCgroup() throws Exception {
        Path dir = throwAwayCgroup();
        try (SampleProcess target = SampleProcess.start()) {
            int pid = target.pid();
            Path home = cgroup2Mount().resolve(ownCgroupPath(pid));
            Files.writeString(dir.resolve("cgroup.procs"), Integer.toString(pid));
            try {
                long watchdog;
                try (FrozenProcess frozen = Freezer.cgroup(dir).freeze()) {
                    watchdog = CgroupFreezer.watchdogPid(frozen);
                    assertTrue(watchdog > 0);
                    ProcessHandle handle = ProcessHandle.of(watchdog).orElseThrow();
                    assertTrue(isWatchdog(handle), handle.info().toString());
                    // a Ctrl-C or SIGTERM aimed at the dumper's process group must not take the watchdog with it
                    for (String signal : List.of("INT", "TERM", "HUP")) {
                        assertEquals(0, new ProcessBuilder("kill", "-" + signal, Long.toString(watchdog)).start().waitFor());
                    }
                    Thread.sleep(100); // a signal that kills is delivered at once; give it the chance to
                    assertTrue(handle.isAlive(), "the watchdog survives INT, TERM and HUP");
                }
                ThreadFreezerTest.waitUntil(() -> ProcessHandle.of(watchdog).map(h -> !h.isAlive()).orElse(true));
                // someone else freezes it now: a watchdog that was told "thawed" must not interfere
                Files.writeString(dir.resolve("cgroup.freeze"), "1");
                ThreadFreezerTest.waitUntil(() -> read(dir.resolve("cgroup.events")).contains("frozen 1"));
                assertEquals("1", Files.readString(dir.resolve("cgroup.freeze")).trim());
                Files.writeString(dir.resolve("cgroup.freeze"), "0");
                // a cgroup frozen before pageflux came stays frozen at thaw, and gets no watchdog
                Files.writeString(dir.resolve("cgroup.freeze"), "1");
                ThreadFreezerTest.waitUntil(() -> read(dir.resolve("cgroup.events")).contains("frozen 1"));
                try (FrozenProcess again = Freezer.cgroup(dir).freeze()) {
                    assertEquals(0, CgroupFreezer.watchdogPid(again));
                }
                assertEquals("1", Files.readString(dir.resolve("cgroup.freeze")).trim());
            } finally {
                Files.writeString(dir.resolve("cgroup.freeze"), "0");
                Files.writeString(home.resolve("cgroup.procs"), Integer.toString(pid));
            }
            target.rewrite();
        } finally {
            Files.deleteIfExists(dir);
        }
    }

    /** A new empty cgroup under the cgroup2 mount; skips the test where cgroup v2 is not writable. */
    private static Path throwAwayCgroup() {
        Path mount = cgroup2Mount();
        Path dir = mount.resolve("pageflux-test-" + ProcessHandle.current().pid() + "-" + System.nanoTime());
        try {
            Files.createDirectory(dir);
        } catch (IOException e) {
            assumeTrue(false, "cannot create a cgroup under " + mount + ": " + e);
        }
        return dir;
    }

    private static boolean isWatchdog(ProcessHandle p) {
        return p.info().arguments().map(a -> List.of(a).contains("pageflux-cgroup-watchdog")).orElse(false);
    }

    private static String read(Path file) {
        try {
            return Files.readString(file);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void theRootCgroupCannotBeFrozen() throws Exception {
        Path mount = cgroup2Mount();
        try (SampleProcess target = SampleProcess.start()) {
            assumeTrue(ownCgroupPath(target.pid()).isEmpty(), "the sample is not in the root cgroup here");
            FreezeException e = assertThrows(FreezeException.class, () -> CgroupFreezer.forPid(target.pid()));
            assertTrue(e.getMessage().startsWith("pid=" + target.pid() + " is in the root cgroup v2, which cannot be frozen"),
                    e.getMessage());
        }
        FreezeException e = assertThrows(FreezeException.class, () -> CgroupFreezer.of(mount));
        assertTrue(e.getMessage().contains("dir=" + mount + " has no cgroup.freeze"), e.getMessage());
    }

    @Test
    void aDirectoryThatIsNoCgroupIsRefused(@TempDir Path tmp) {
        FreezeException e = assertThrows(FreezeException.class, () -> Freezer.cgroup(tmp));
        assertTrue(e.getMessage().startsWith("not a freezable cgroup v2 directory: dir=" + tmp), e.getMessage());
    }

    private static Path cgroup2Mount() {
        try {
            return CgroupFreezer.cgroup2Mount(0);
        } catch (FreezeException e) {
            assumeTrue(false, "no cgroup2 mount: " + e.getMessage());
            throw e;
        }
    }

    /** The cgroup v2 path of pid relative to the mount ("" for the root). */
    private static String ownCgroupPath(int pid) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc", Integer.toString(pid), "cgroup"))) {
            if (line.startsWith("0::")) {
                return line.substring(4);
            }
        }
        throw new IOException("no cgroup v2 line for pid=" + pid);
    }

    private static long contextSwitches(int pid) {
        try {
            long total = 0;
            for (String line : Files.readAllLines(Path.of("/proc", Integer.toString(pid), "status"))) {
                if (line.startsWith("voluntary_ctxt_switches:") || line.startsWith("nonvoluntary_ctxt_switches:")) {
                    total += Long.parseLong(line.substring(line.indexOf(':') + 1).trim());
                }
            }
            return total;
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }
}
