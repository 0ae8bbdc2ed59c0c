package io.pageflux.source.freeze;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.nativeio.Ptrace;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.sample.SampleProcess;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class ThreadFreezerTest {

    @Test
    void freezesEveryThreadIntoATracingStopAndThawsThem() throws Exception {
        try (SampleProcess target = SampleProcess.start(1, false)) {
            int pid = target.pid();
            FrozenProcess frozen = Freezer.ptrace(pid).freeze();
            try {
                assertEquals(ProcTask.threads(pid), frozen.threads());
                assertEquals(pid, frozen.pid());
                assertTrue(frozen.isFrozen());
                for (int tid : frozen.threads()) {
                    assertEquals('t', ProcTask.threadStat(pid, tid).state(), "tid=" + tid + " while frozen");
                }
                assertTrue(frozen.frozenTime().compareTo(frozen.freezeLatency()) >= 0);
            } finally {
                frozen.thaw();
            }
            assertFalse(frozen.isFrozen());
            Duration total = frozen.frozenTime();
            assertTrue(total.toNanos() > 0);
            assertEquals(total, frozen.thaw(), "a second thaw changes nothing");
            for (int tid : ProcTask.threads(pid)) {
                char state = ProcTask.threadStat(pid, tid).state();
                assertTrue(state != 't' && state != 'T', "tid=" + tid + " state=" + state + " after thaw");
            }
            // it really runs: it answers a signal (64 pages of 1 MiB: every 4th is rewritten)
            assertEquals(64, target.rewrite());
        }
    }

    @Test
    void catchesEveryThreadOfATargetThatKeepsCreatingThreads() throws Exception {
        try (SampleProcess target = SampleProcess.start(SampleProcess.Options.defaults().withThreads(4).withSpawner(true))) {
            int pid = target.pid();
            int maxPasses = 0;
            // many rounds: now and then a thread created while freezing comes out already attached to us
            for (int i = 0; i < 60; i++) {
                try (FrozenProcess frozen = Freezer.ptrace(pid).freeze()) {
                    // nothing can be created while every thread is stopped: every thread listed now is frozen,
                    // except short-lived ones that were already exiting when the freeze met them
                    List<Integer> now = ProcTask.threads(pid);
                    assertTrue(now.containsAll(frozen.threads()), "iteration " + i + ": " + frozen.threads() + " in " + now);
                    assertTrue(frozen.threads().size() >= 6, "main, spawner and 4 workers: " + frozen.threads());
                    for (int tid : frozen.threads()) {
                        assertEquals('t', ProcTask.threadStat(pid, tid).state(), "iteration " + i + " tid=" + tid);
                    }
                    for (int tid : now) {
                        if (!frozen.threads().contains(tid)) {
                            assertTrue(exiting(pid, tid), "iteration " + i + ": tid=" + tid + " runs, not frozen");
                        }
                    }
                    maxPasses = Math.max(maxPasses, ThreadFreezer.passesOf(frozen));
                }
                for (int tid : ProcTask.threads(pid)) {
                    ProcTask.Stat s = ProcTask.threadStat(pid, tid);
                    assertTrue(s == null || s.state() != 't', "iteration " + i + " tid=" + tid + " still stopped");
                }
            }
            assertTrue(maxPasses >= 2, "each freeze lists the threads at least twice: " + maxPasses);
            assertTrue(target.isAlive());
        }
    }

    @Test
    void reportsTheRseqAreaOfEveryThreadWhichHoldsItsCpuNumber() throws Exception {
        try (SampleProcess target = SampleProcess.start(SampleProcess.Options.defaults().withThreads(3))) {
            int pid = target.pid();
            try (FrozenProcess frozen = Freezer.ptrace(pid).freeze();
                 java.io.RandomAccessFile mem = new java.io.RandomAccessFile("/proc/" + pid + "/mem", "r")) {
                String possible = java.nio.file.Files.readString(java.nio.file.Path.of("/sys/devices/system/cpu/possible"))
                        .trim(); // e.g. "0-1"
                int cpus = Integer.parseInt(possible.substring(possible.lastIndexOf('-') + 1)) + 1;
                List<KernelWrittenArea> areas = frozen.kernelWritten();
                org.junit.jupiter.api.Assumptions.assumeFalse(areas.isEmpty(), "no rseq: kernel < 5.13 or glibc < 2.35");
                assertEquals(frozen.threads(), areas.stream().map(KernelWrittenArea::tid).toList());
                for (KernelWrittenArea a : areas) {
                    assertEquals("rseq", a.what());
                    assertTrue(a.size() >= 20, a.toString());
                    // struct rseq: u32 cpu_id_start, u32 cpu_id: the CPU the thread last ran on
                    mem.seek(a.address() + 4);
                    int cpu = Integer.reverseBytes(mem.readInt());
                    assertTrue(cpu >= 0 && cpu < cpus, a + " cpu_id=" + cpu + " possible=" + possible);
                    mem.seek(a.address());
                    assertEquals(cpu, Integer.reverseBytes(mem.readInt()), "cpu_id_start == cpu_id outside a sequence");
                }
            }
        }
    }

    @Test
    void aThreadCreatedWhileFreezingIsCaught() throws Exception {
        try (SampleProcess target = SampleProcess.start(SampleProcess.Options.defaults().withThreads(1))) {
            int pid = target.pid();
            int[] spawned = {0};
            // after the first listing, before anything is seized: make the target create a thread and wait for it
            ThreadFreezer freezer = ThreadFreezer.of(pid).withAfterListing((pass, tids) -> {
                if (pass == 1) {
                    try {
                        spawned[0] = target.spawnThread();
                    } catch (IOException e) {
                        throw new IllegalStateException(e);
                    }
                    assertFalse(tids.contains(spawned[0]), "the new thread is not in the first listing");
                }
            });
            try (FrozenProcess frozen = freezer.freeze()) {
                assertTrue(spawned[0] > 0);
                assertTrue(frozen.threads().contains(spawned[0]), spawned[0] + " in " + frozen.threads());
                assertEquals(3, ThreadFreezer.passesOf(frozen), "listing 1, listing 2 finds the new thread, 3 is stable");
                assertEquals('t', ProcTask.threadStat(pid, spawned[0]).state());
                assertEquals(ProcTask.threads(pid), frozen.threads());
            }
            assertTrue(ProcTask.threadStat(pid, spawned[0]).state() != 't');
        }
    }

    @Test
    void theTargetRunsOnWhenTheFreezingProcessIsKilledMidFreeze() throws Exception {
        try (SampleProcess target = SampleProcess.start(1, false)) {
            int pid = target.pid();
            Process holder = new ProcessBuilder(FreezeHolder.command(pid)).redirectError(ProcessBuilder.Redirect.INHERIT)
                    .start();
            try {
                BufferedReader out = new BufferedReader(new InputStreamReader(holder.getInputStream(),
                        StandardCharsets.US_ASCII));
                String line = out.readLine();
                assertNotNull(line, "the freezing JVM printed nothing");
                assertTrue(line.startsWith("frozen pid=" + holder.pid()), line);
                for (int tid : ProcTask.threads(pid)) {
                    assertEquals('t', ProcTask.threadStat(pid, tid).state(), "frozen by the other JVM: tid=" + tid);
                }
                assertEquals((int) holder.pid(), ProcTask.tgid(ProcTask.tracerPid(pid)), "traced by a thread of the other JVM");

                holder.destroyForcibly(); // SIGKILL mid-freeze: no thaw runs
                assertTrue(holder.waitFor(10, TimeUnit.SECONDS));
                assertEquals(137, holder.exitValue());
            } finally {
                holder.destroyForcibly();
            }
            waitUntilRunning(pid);
            for (int tid : ProcTask.threads(pid)) {
                char state = ProcTask.threadStat(pid, tid).state();
                assertTrue(state != 't' && state != 'T', "tid=" + tid + " state=" + state + " after the tracer died");
            }
            assertEquals(0, ProcTask.tracerPid(pid));
            assertTrue(target.isAlive());
            assertEquals(64, target.rewrite(), "it runs: it answers SIGUSR2");
        }
    }

    @Test
    void aTargetAlreadyTracedByAnotherProcessGivesAClearErrorAndStaysAsItWas() throws Exception {
        try (SampleProcess target = SampleProcess.start(0, false)) {
            int pid = target.pid();
            Process holder = new ProcessBuilder(FreezeHolder.command(pid)).redirectError(ProcessBuilder.Redirect.INHERIT)
                    .start();
            try {
                BufferedReader out = new BufferedReader(new InputStreamReader(holder.getInputStream(),
                        StandardCharsets.US_ASCII));
                assertTrue(out.readLine().startsWith("frozen"));
                AlreadyTracedException e = assertThrows(AlreadyTracedException.class,
                        () -> Freezer.ptrace(pid).freeze());
                assertEquals(holder.pid(), e.tracerPid());
                assertEquals(pid, e.pid());
                assertTrue(e.getMessage().startsWith("pid=" + pid + " is already traced by pid=" + holder.pid()
                        + " (TracerPid in /proc/" + pid + "/status): detach the debugger"), e.getMessage());
                holder.getOutputStream().close(); // the other tracer lets go
                assertEquals("thawed", out.readLine());
                assertTrue(holder.waitFor(10, TimeUnit.SECONDS));
            } finally {
                holder.destroyForcibly();
            }
            waitUntilRunning(pid);
            // and now it can be frozen by us
            try (FrozenProcess frozen = Freezer.ptrace(pid).freeze()) {
                assertEquals(ProcTask.threads(pid), frozen.threads());
            }
            target.rewrite();
        }
    }

    @Test
    void aChildOfThisJvmIsRefusedAndKeepsRunning() throws Exception {
        // started directly with ProcessBuilder, not through SampleProcess (which makes it a grandchild)
        Process child = new ProcessBuilder(SampleProcess.binary().toString()).start();
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.US_ASCII));
            assertTrue(out.readLine().startsWith("A=0x"), "the sample printed its layout");
            int pid = (int) child.pid();
            FreezeException e = assertThrows(FreezeException.class, () -> Freezer.ptrace(pid).freeze());
            assertEquals("cannot freeze pid=" + pid + " with ptrace: it is a child of this JVM (pid="
                    + ProcessHandle.current().pid() + "), whose process reaper would take its ptrace stops for an"
                    + " exit; start the target from another process (e.g. through a shell: sh -c 'prog & wait', as"
                    + " io.pageflux.source.sample.DetachedProcess does), or use the cgroup freezer", e.getMessage());
            assertTrue(child.isAlive());
            assertFalse(ProcTask.stat(pid).stopped());
            assertEquals(0, ProcTask.tracerPid(pid), "nothing was seized");
            Ptrace.kill(pid, SampleProcess.SIGUSR2);
            assertEquals("rewrote 0", out.readLine(), "it runs: no X region, 0 pages rewritten, but it answered");
        } finally {
            child.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void aSampleProcessIsNotAChildOfThisJvmSoItCanBeFrozenHere() throws Exception {
        try (SampleProcess target = SampleProcess.start(SampleProcess.Options.defaults().withThreads(3))) {
            int pid = target.pid();
            assertTrue(ProcTask.stat(pid).ppid() != ProcessHandle.current().pid());
            assertEquals(ProcessHandle.current().pid(), ProcTask.stat(ProcTask.stat(pid).ppid()).ppid(),
                    "a grandchild: its parent, the shell, is our child");
            List<Integer> before = ProcTask.threads(pid);
            assertEquals(4, before.size(), "main and 3 workers: " + before);
            try (FrozenProcess frozen = Freezer.ptrace(pid).freeze()) {
                assertEquals(before, frozen.threads());
                for (int tid : before) {
                    assertEquals('t', ProcTask.threadStat(pid, tid).state(), "tid=" + tid);
                }
                assertTrue(target.isAlive(), "our Process bookkeeping did not take the stop for an exit");
            }
            waitUntilRunning(pid);
            // it runs: the main thread answers a command and creates a fifth thread
            int tid = target.spawnThread();
            assertEquals(5, ProcTask.threads(pid).size());
            assertTrue(ProcTask.threads(pid).contains(tid));
        }
    }

    @Test
    void aProcessThatIsGoneGivesProcessGone() throws Exception {
        Process p = new ProcessBuilder("true").start();
        int pid = (int) p.pid();
        assertTrue(p.waitFor(10, TimeUnit.SECONDS));
        ProcessGoneException e = assertThrows(ProcessGoneException.class, () -> Freezer.ptrace(pid).freeze());
        assertEquals(pid, e.pid());
        assertTrue(e.getMessage().contains("pid=" + pid), e.getMessage());
    }

    @Test
    void aTargetExitingWhileFrozenIsThawedWithoutError() throws Exception {
        try (SampleProcess target = SampleProcess.start(SampleProcess.Options.defaults().withThreads(2))) {
            int pid = target.pid();
            FrozenProcess frozen = Freezer.ptrace(pid).freeze();
            target.signal(9); // SIGKILL ends even a ptrace stop
            waitUntil(() -> ProcTask.stat(pid) == null || ProcTask.stat(pid).exited() || !allStopped(pid));
            frozen.thaw();
            assertFalse(frozen.isFrozen());
            target.kill();
            assertFalse(target.isAlive());
            assertThrows(ProcessGoneException.class, () -> Freezer.ptrace(pid).freeze());
        }
    }

    /** Gone, a zombie, or past the point of no return ({@code PF_EXITING} in the stat flags, field 9). */
    private static boolean exiting(int pid, int tid) {
        try {
            String stat = java.nio.file.Files.readString(java.nio.file.Path.of("/proc", Integer.toString(pid), "task",
                    Integer.toString(tid), "stat"));
            String[] rest = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            char state = rest[0].charAt(0);
            long flags = Long.parseLong(rest[6]);
            return state == 'Z' || state == 'X' || (flags & 0x4) != 0;
        } catch (java.io.IOException e) {
            return true; // gone meanwhile
        }
    }

    private static boolean allStopped(int pid) {
        for (int tid : ProcTask.threads(pid)) {
            ProcTask.Stat s = ProcTask.threadStat(pid, tid);
            if (s != null && s.state() != 't') {
                return false;
            }
        }
        return true;
    }

    /** Polls (up to 10 s) until no thread of pid is stopped; the tracer's exit releases them asynchronously. */
    static void waitUntilRunning(int pid) throws InterruptedException {
        waitUntil(() -> {
            for (int tid : ProcTask.threads(pid)) {
                ProcTask.Stat s = ProcTask.threadStat(pid, tid);
                if (s != null && (s.state() == 't' || s.state() == 'T')) {
                    return false;
                }
            }
            return true;
        });
    }

    static void waitUntil(java.util.function.BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("condition not met within 10 s");
            }
            Thread.sleep(5);
        }
    }
}
