package io.pageflux.source.freeze;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.pageflux.source.sample.SampleProcess;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
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
