package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
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
import java.time.Duration;
import java.util.Optional;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/** {@link LiveProcess#attach} validation against real processes. */
class LiveProcessTest {

    @Test
    void attachesToARunningProcess() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            LiveProcess live = LiveProcess.attach(sample.pid());
            assertEquals(sample.pid(), live.pid());
            assertEquals(ScannerKind.AUTO, live.scanner());
            LiveProcess file = live.withScanner(ScannerKind.PAGEMAP_FILE);
            assertEquals(ScannerKind.PAGEMAP_FILE, file.scanner());
            assertEquals(ScannerKind.AUTO, live.scanner(), "withScanner returns a copy");
            assertEquals(sample.pid(), file.pid());
            assertNotEquals(live, file);
            assertEquals(live, file.withScanner(ScannerKind.AUTO));
            assertEquals("LiveProcess[pid=" + sample.pid() + " scanner=PAGEMAP_FILE]", file.toString());
        }
    }

    @Test
    void anUnknownPidIsAGoneProcess() throws IOException {
        int pid = unusedPid();
        ProcessGoneException e = assertThrows(ProcessGoneException.class, () -> LiveProcess.attach(pid));
        assertEquals(pid, e.pid());
        assertTrue(e.getMessage().startsWith("process is gone: pid=" + pid + " reason=no-such-process"), e.getMessage());
        assertTrue(e.getMessage().contains("ps -p " + pid), e.getMessage());
    }

    @Test
    void aProcessThatExitedIsGoneToo() throws Exception {
        int pid;
        try (SampleProcess sample = SampleProcess.start()) {
            pid = sample.pid();
            sample.kill();
        }
        assertEquals(pid, assertThrows(ProcessGoneException.class, () -> LiveProcess.attach(pid)).pid());
    }

    @Test
    void aZombieHasNoMemoryLeftToDump() throws Exception {
        // sh starts a child, then execs into sleep, which never reaps it: when the child exits
        // (after sh has exec'd, so sh cannot reap it either) it stays a zombie
        Process parent = new ProcessBuilder("sh", "-c", "sleep 0.3 & echo $!; exec sleep 30")
                .redirectErrorStream(true).start();
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(parent.getInputStream(), StandardCharsets.US_ASCII));
            int zombie = Integer.parseInt(out.readLine().trim());
            long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
            while (ProcStat.read(zombie) == null || ProcStat.read(zombie).state() != 'Z') {
                assertTrue(System.nanoTime() < deadline, "child pid=" + zombie + " never became a zombie");
                Thread.sleep(5);
            }
            ProcessGoneException e = assertThrows(ProcessGoneException.class, () -> LiveProcess.attach(zombie));
            assertEquals(zombie, e.pid());
            assertTrue(e.getMessage().contains("state=Z"), e.getMessage());
        } finally {
            parent.destroyForcibly().waitFor();
        }
    }

    @Test
    void aKernelThreadIsRefusedWithAClearReason() throws IOException {
        Optional<ProcStat> kthread = kernelThread();
        assumeTrue(kthread.isPresent(), "no kernel thread visible in this pid namespace");
        ProcStat k = kthread.get();
        PagefluxException e = assertThrows(PagefluxException.class, () -> LiveProcess.attach(k.pid()));
        assertEquals(PagefluxException.class, e.getClass());
        assertTrue(e.getMessage().startsWith("cannot dump a kernel thread: pid=" + k.pid() + " comm=" + k.comm()),
                e.getMessage());
        assertTrue(e.getMessage().contains("pick a user process"), e.getMessage());
    }

    @Test
    void rejectsNonPositivePids() {
        assertThrows(IllegalArgumentException.class, () -> LiveProcess.attach(0));
        assertThrows(IllegalArgumentException.class, () -> LiveProcess.attach(-5));
    }

    private static Optional<ProcStat> kernelThread() throws IOException {
        try (Stream<Path> procs = Files.list(Path.of("/proc"))) {
            return procs.map(p -> p.getFileName().toString())
                    .filter(n -> n.chars().allMatch(Character::isDigit))
                    .map(n -> ProcStat.read(Integer.parseInt(n)))
                    .filter(s -> s != null && s.kernelThread())
                    .findFirst();
        }
    }

    /** A pid with no process: counts down from pid_max, which the kernel hands out last. */
    private static int unusedPid() throws IOException {
        int max = Integer.parseInt(ProcStat.readProcFile(Path.of("/proc/sys/kernel/pid_max")).strip());
        for (int pid = max - 1; pid > 1; pid--) {
            if (!Files.exists(Path.of("/proc", Integer.toString(pid)))) {
                return pid;
            }
        }
        throw new AssertionError("every pid is in use");
    }
}
