package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** {@link Smaps#read(int)} on live processes and its errors. */
class SmapsReadTest {

    @Test
    void liveSampleShowsItsRegions() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            List<MemoryRegion> regions = Smaps.read(sample.pid());
            for (int i = 1; i < regions.size(); i++) {
                assertTrue(Long.compareUnsigned(regions.get(i - 1).end(), regions.get(i).start()) <= 0, "ascending");
            }
            MemoryRegion d = regions.stream().filter(r -> r.contains(sample.address(Region.D))).findFirst().orElseThrow();
            assertEquals("/dev/zero (deleted)", d.path());
            assertEquals("rw-s", d.perms());
            assertEquals(8L * 4, d.fields().get("Rss"), "D's 8 pages are resident");
            MemoryRegion c = regions.stream().filter(r -> r.contains(sample.address(Region.C))).findFirst().orElseThrow();
            assertEquals("---p", c.perms());
            assertTrue(regions.stream().anyMatch(r -> r.path().equals("[vdso]")));
            // the binary itself, a file mapping with a path
            assertTrue(regions.stream().anyMatch(r -> r.path().endsWith("/vtarget") && r.inode() != 0));
        }
    }

    @Test
    void pidThatDoesNotExist() throws Exception {
        int pid = PageScanTest.impossiblePid();
        ProcessGoneException e = assertThrows(ProcessGoneException.class, () -> Smaps.read(pid));
        assertEquals(pid, e.pid());
        assertTrue(e.getMessage().contains("pid=" + pid), e.getMessage());
        assertTrue(e.getMessage().contains("file=/proc/" + pid + "/smaps"), e.getMessage());
    }

    @Test
    void kernelThreadHasNothingToDump() throws Exception {
        // pid 2 is kthreadd on Linux; skip where this JVM runs in a pid namespace that hides it
        assumeTrue(ProcStat.readProcFile(Path.of("/proc/2/stat")).contains("(kthreadd)"), "pid 2 is not kthreadd here");
        PagefluxException e = assertThrows(PagefluxException.class, () -> Smaps.read(2));
        assertEquals(PagefluxException.class, e.getClass());
        assertTrue(e.getMessage().contains("pid=2 is a kernel thread (no user address space): nothing to dump"),
                e.getMessage());
    }

    @Test
    void exitedProcessIsGone() throws Exception {
        int pid;
        try (SampleProcess sample = SampleProcess.start()) {
            pid = sample.pid();
        }
        int gone = pid;
        ProcessGoneException e = assertThrows(ProcessGoneException.class, () -> Smaps.read(gone));
        assertEquals(gone, e.pid());
    }

    @Test
    void accessDeniedSaysWhichPrivilegeIsMissing() {
        // root cannot be refused, so the mapping is checked with the exception the JDK throws on EACCES
        AccessDeniedException denied = new AccessDeniedException("/proc/1/smaps");
        PagefluxException e = ProcAccess.fromIo(1, "/proc/1/smaps", denied);
        PermissionDeniedException p = assertInstanceOf(PermissionDeniedException.class, e);
        assertEquals(1, p.pid());
        assertSame(denied, p.getCause());
        assertTrue(p.getMessage().contains("pid=1"), p.getMessage());
        assertTrue(p.getMessage().contains("file=/proc/1/smaps"), p.getMessage());
        assertTrue(p.getMessage().contains("CAP_SYS_PTRACE"), p.getMessage());
        assertTrue(p.getMessage().contains("ptrace_scope"), p.getMessage());

        PagefluxException eperm = ProcAccess.fromIo(1, "/proc/1/smaps", new IOException("Operation not permitted"));
        assertInstanceOf(PermissionDeniedException.class, eperm);
        assertFalse(eperm instanceof ProcessGoneException);
    }
}
