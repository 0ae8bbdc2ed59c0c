package io.pageflux.source.sample;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class SampleProcessTest {

    @Test
    void theSampleIsAGrandchildAndCloseLeavesNothingBehind() throws Exception {
        int pid;
        int shell;
        try (SampleProcess sample = SampleProcess.start()) {
            pid = sample.pid();
            shell = ppid(pid);
            assertTrue(shell != ProcessHandle.current().pid(), "not our child");
            assertEquals(ProcessHandle.current().pid(), ppid(shell), "its parent (the shell) is our child");
            assertTrue(sample.isAlive());
            assertEquals("vtarget", Files.readString(Path.of("/proc", Integer.toString(pid), "comm")).trim());
        }
        assertFalse(Files.exists(Path.of("/proc", Integer.toString(pid))), "the sample is gone (reaped)");
        assertTrue(ProcessHandle.of(shell).isEmpty() || !Files.exists(Path.of("/proc", Integer.toString(shell))),
                "the shell is gone");
    }

    @Test
    void killEndsItAtOnceAndTheExitStatusSaysSo() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            sample.kill();
            assertFalse(sample.isAlive());
            assertFalse(Files.exists(Path.of("/proc", Integer.toString(sample.pid()))));
        }
        try (DetachedProcess p = DetachedProcess.start(List.of(SampleProcess.binary().toString()))) {
            assertTrue(p.readLine().startsWith("A="));
            assertEquals(Optional.empty(), p.exitStatus());
            p.kill();
            assertEquals(Optional.of(128 + 9), p.exitStatus(), "SIGKILL, as the shell reports it");
        }
    }

    @Test
    void theSampleExitsWhenTheJvmThatStartedItIsKilled() throws Exception {
        Process holder = new ProcessBuilder(SampleHolder.command()).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        int pid;
        try {
            String line = new BufferedReader(new InputStreamReader(holder.getInputStream(), StandardCharsets.US_ASCII))
                    .readLine();
            assertNotNull(line, "the holder JVM printed nothing");
            assertTrue(line.startsWith("sample pid="), line);
            pid = Integer.parseInt(line.substring("sample pid=".length()));
            assertEquals(3, Files.list(Path.of("/proc", Integer.toString(pid), "task")).count(), "main + 2 workers");
            holder.destroyForcibly(); // SIGKILL: no close() runs
            assertTrue(holder.waitFor(10, TimeUnit.SECONDS));
        } finally {
            holder.destroyForcibly();
        }
        // the kernel closed the holder's end of the sample's stdin: the sample sees EOF and exits
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        Path proc = Path.of("/proc", Integer.toString(pid));
        while (Files.exists(proc) && !zombie(proc)) {
            assertTrue(System.nanoTime() < deadline, "pid=" + pid + " outlived the JVM that started it");
            Thread.sleep(5);
        }
    }

    @Test
    void spawnThreadAddsAWorkerAndOptionsAreChecked() throws Exception {
        try (SampleProcess sample = SampleProcess.start(SampleProcess.Options.defaults().withThreads(1))) {
            Path task = Path.of("/proc", Integer.toString(sample.pid()), "task");
            assertEquals(2, Files.list(task).count());
            int tid = sample.spawnThread();
            assertTrue(Files.exists(task.resolve(Integer.toString(tid))), "tid=" + tid);
            assertEquals(3, Files.list(task).count());
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> SampleProcess.Options.defaults().withThreads(65));
        assertEquals("sample options out of range: bulkMib=0 (>= 0) threads=65 (0-64)", e.getMessage());
    }

    @Test
    void aCommandThatCannotRunIsReportedAndOneThatEndsHasItsStatus() throws Exception {
        IOException e = assertThrows(IOException.class, () -> DetachedProcess.start(List.of("/nonexistent/prog")));
        assertEquals("command=[/nonexistent/prog]: program=/nonexistent/prog is not an executable file", e.getMessage());
        try (DetachedProcess p = DetachedProcess.start(List.of("/bin/sh", "-c", "echo hello; exit 3"))) {
            assertEquals("hello", p.readLine());
            assertEquals(null, p.readLine());
            p.close();
            assertEquals(Optional.of(3), p.exitStatus());
            assertFalse(p.isAlive());
        }
    }

    private static int ppid(int pid) throws IOException {
        String stat = Files.readString(Path.of("/proc", Integer.toString(pid), "stat"));
        return Integer.parseInt(stat.substring(stat.lastIndexOf(')') + 2).split(" ")[1]);
    }

    private static boolean zombie(Path proc) {
        try {
            String stat = Files.readString(proc.resolve("stat"));
            return stat.charAt(stat.lastIndexOf(')') + 2) == 'Z';
        } catch (IOException gone) {
            return false;
        }
    }
}
