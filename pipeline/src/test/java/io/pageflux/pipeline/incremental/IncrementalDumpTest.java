package io.pageflux.pipeline.incremental;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.pipeline.DumpProgress;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.sink.criu.proto.InventoryProtos.InventoryEntry;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.freeze.FreezeMode;
import io.pageflux.source.freeze.Freezer;
import io.pageflux.source.freeze.ProcTask;
import io.pageflux.source.incremental.PageDigests;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class IncrementalDumpTest {

    @TempDir
    Path tmp;

    private static IncrementalReport preDump(int pid, Path out, ParentDump parent) {
        return IncrementalDump.of(pid).parent(parent).to(PageSinks.criuImages(out)).digestsDir(out).run().block();
    }

    @Test
    void aPreDumpAfterRewriteWritesOnlyTheRewrittenPagesAndVerifies() throws Exception {
        try (SampleProcess target = SampleProcess.start(4, false)) {
            int pid = target.pid();
            Path d1 = tmp.resolve("d1");
            IncrementalReport r1 = preDump(pid, d1, null);
            assertEquals(0, r1.pagesUnchanged());
            assertTrue(r1.pagesSent() >= target.bulkPages() + 64, "X and A at least: " + r1.pagesSent());
            assertEquals(d1.resolve(PageDigests.FILE_NAME), r1.digestsFile().orElseThrow());
            assertEquals(1, r1.freezes().size());
            assertEquals(FreezeMode.PRE_DUMP, r1.freezes().get(0).mode());
            assertTrue(r1.frozen().toNanos() > 0);
            ImageDirectory i1 = ImageDirectory.open(d1);
            assertEquals(0, i1.parentPages());
            assertEquals(r1.pagesSent(), i1.presentPages());
            PageDigests digests = PageDigests.read(d1);
            assertEquals(pid, digests.pid());
            assertEquals(i1.inventory().orElseThrow().dumpUptime().getAsLong(), digests.dumpUptimeMicros(),
                    "the digests are tied to the inventory of the same dump");
            assertEquals(i1.presentPages(), digests.pages());

            long rewritten = target.rewrite();
            assertEquals(target.bulkPages() / 4, rewritten);

            Path d2 = tmp.resolve("d2");
            IncrementalReport r2 = preDump(pid, d2, ParentDump.open(d1, pid));
            assertTrue(r2.fallback().isEmpty());
            ImageDirectory i2 = ImageDirectory.open(d2);
            assertEquals(Path.of("../d1"), i2.parentLink().orElseThrow(), "relative, as CRIU writes it");
            assertEquals(r2.pagesSent(), i2.presentPages());
            assertEquals(r2.pagesUnchanged(), i2.parentPages());
            long x = target.address(Region.X);
            long present = 0;
            long holes = 0;
            for (PagemapImage.Entry e : i2.pagemap(PagemapId.task(pid)).orElseThrow().entries()) {
                for (long p = 0; p < e.nrPages(); p++) {
                    long page = (e.vaddr() + p * 4096 - x) / 4096;
                    if (e.vaddr() + p * 4096 >= x && page < target.bulkPages()) {
                        assertEquals(page % 4 == 0, e.present(), "X page " + page + " in " + e);
                        present += e.present() ? 1 : 0;
                        holes += e.inParent() ? 1 : 0;
                    }
                }
            }
            assertEquals(rewritten, present);
            assertEquals(target.bulkPages() - rewritten, holes);
            critAgrees(d2.resolve("pagemap-" + pid + ".img"), i2.pagemap(PagemapId.task(pid)).orElseThrow());

            VerifyReport v2 = Verifier.verify(d2, pid, Freezer.ptrace(pid));
            assertTrue(v2.ok(), v2.text());
            assertEquals(2, v2.chainDepth());
            assertEquals(i2.presentPages() + i2.parentPages(), v2.pagesCompared());
            assertEquals(i2.parentPages(), v2.pagesFromParents());
            assertTrue(v2.frozen().toNanos() > 0);

            // the parent alone is stale now: exactly the pages d2 had to send differ (the rewritten ones, plus
            // the few of libc and the stack that answering the signal touched)
            VerifyReport v1 = Verifier.verify(d1, pid, Freezer.ptrace(pid));
            assertFalse(v1.ok());
            // d2 may also have sent the page of the thread's rseq area, which only the kernel changed (on a CPU
            // switch): verify does not count such a page as different
            long onlyRseq = r2.pagesSent() - v1.bytesDiffer();
            assertTrue(onlyRseq == 0 || onlyRseq == 1, "sent " + r2.pagesSent() + " " + v1.text());
            assertTrue(v1.bytesDiffer() >= rewritten);
            assertEquals(0, v1.notInImage());
            assertTrue(v1.examples().stream().anyMatch(m -> m.startsWith(String.format(
                    "address=0x%x pagemap-%d.img bytes differ at offset 7", x, pid))), v1.text());
            assertTrue(target.isAlive());
        }
    }

    @Test
    void aTargetThatKeepsWritingVerifiesAfterEveryFrozenIteration() throws Exception {
        try (SampleProcess target = SampleProcess.start(4, true)) {
            int pid = target.pid();
            ParentDump parent = null;
            for (int i = 1; i <= 3; i++) {
                Path d = tmp.resolve("it" + i);
                IncrementalReport r = IncrementalDump.of(pid).mode(FreezeMode.DUMP).parent(parent)
                        .to(PageSinks.criuImages(d)).digestsDir(d).verifyFrozen(true).run().block();
                VerifyReport v = r.verify().orElseThrow();
                assertTrue(v.ok(), "iteration " + i + ": " + v.text());
                assertEquals(i, v.chainDepth());
                if (i > 1) {
                    assertTrue(r.pagesUnchanged() > 0, "iteration " + i + ": the writer touches every 64th page only");
                    assertTrue(v.pagesFromParents() > 0);
                }
                assertEquals(1, r.freezes().size());
                assertEquals(FreezeMode.DUMP, r.freezes().get(0).mode());
                parent = ParentDump.open(d, pid);
                Thread.sleep(20); // let it write between iterations
            }
            // thawed: it keeps writing, so the last image goes stale
            assertFalse(Files.readString(Path.of("/proc/" + pid + "/stat")).split(" ")[2].equals("t"));
            assertTrue(target.isAlive());
        }
    }

    @Test
    void aBadParentIsRefusedWithTheReason() throws Exception {
        try (SampleProcess target = SampleProcess.start(0, false);
             SampleProcess other = SampleProcess.start(0, false)) {
            int pid = target.pid();
            ParentDumpException e = assertThrows(ParentDumpException.class,
                    () -> ParentDump.open(tmp.resolve("missing"), pid));
            assertEquals("parent=" + tmp.resolve("missing") + " does not exist: name the directory of an earlier dump"
                    + " of pid=" + pid + " (e.g. made by pageflux pre-dump --out)", e.getMessage());

            Path empty = Files.createDirectory(tmp.resolve("empty"));
            e = assertThrows(ParentDumpException.class, () -> ParentDump.open(empty, pid));
            assertEquals("parent=" + empty + " is not a dump: it has no inventory.img", e.getMessage());

            Path ofOther = tmp.resolve("other");
            preDump(other.pid(), ofOther, null);
            e = assertThrows(ParentDumpException.class, () -> ParentDump.open(ofOther, pid));
            assertTrue(e.getMessage().startsWith("parent=" + ofOther + " is a dump of pid=" + other.pid() + ", not of pid="
                    + pid), e.getMessage());

            // nothing was frozen or attached, and the target runs: it answers
            assertEquals(0, ProcTask.tracerPid(pid));
            assertFalse(ProcTask.stat(pid).stopped());
            assertEquals(0, target.rewrite(), "no X region: 0 pages rewritten, but it answered");
        }
    }

    @Test
    void aPreDumpOfATargetThatKeepsCreatingThreadsFreezesThemAllAndLeavesItRunning() throws Exception {
        try (SampleProcess target = SampleProcess.start(SampleProcess.Options.defaults().withBulkMib(2).withThreads(3)
                .withSpawner(true))) {
            int pid = target.pid();
            Path d1 = tmp.resolve("d1");
            IncrementalReport r1 = preDump(pid, d1, null);
            // main, 3 workers, the spawner, and whichever short-lived threads were alive
            assertTrue(r1.freezes().get(0).threads() >= 5, r1.freezes().toString());
            IncrementalReport r2 = preDump(pid, tmp.resolve("d2"), ParentDump.open(d1, pid));
            assertTrue(r2.pagesUnchanged() >= target.bulkPages(), "X did not change: " + r2.line());
            // thawed: every thread runs, the main thread answers and creates one more
            int tid = target.spawnThread();
            for (int t : ProcTask.threads(pid)) {
                ProcTask.Stat s = ProcTask.threadStat(pid, t);
                assertTrue(s == null || s.state() != 't', "tid=" + t + " still stopped");
            }
            assertTrue(ProcTask.threads(pid).contains(tid));
        }
    }

    @Test
    void progressSnapshotsStateTheFrozenTime() throws Exception {
        try (SampleProcess target = SampleProcess.start(8, false)) {
            int pid = target.pid();
            for (FreezeMode mode : new FreezeMode[] {FreezeMode.PRE_DUMP, FreezeMode.DUMP}) {
                List<DumpProgress> ticks = new CopyOnWriteArrayList<>();
                Path out = tmp.resolve(mode.cliName());
                IncrementalReport r = IncrementalDump.of(pid).mode(mode).to(PageSinks.criuImages(out))
                        .progress(Duration.ofMillis(1), ticks::add).run().block();
                DumpProgress last = ticks.get(ticks.size() - 1);
                assertTrue(last.finished(), mode + ": " + last);
                if (mode == FreezeMode.PRE_DUMP) {
                    // frozen for the scan only, before any page was read: the last snapshot has the whole freeze
                    assertEquals(r.frozen(), last.frozen(), mode.cliName());
                } else {
                    // frozen around the whole read: the snapshots see a freeze that is still going on
                    assertTrue(last.frozen().toNanos() > 0 && last.frozen().compareTo(r.frozen()) <= 0,
                            mode + ": " + last.frozen() + " of " + r.frozen());
                }
                for (int i = 1; i < ticks.size(); i++) {
                    assertTrue(ticks.get(i).frozen().compareTo(ticks.get(i - 1).frozen()) >= 0, "frozen time never shrinks");
                }
            }
        }
    }

    @Test
    void aReusedPidOrMissingDigestsFallBackToWritingEveryPage() throws Exception {
        try (SampleProcess target = SampleProcess.start(1, false)) {
            int pid = target.pid();
            Path d1 = tmp.resolve("d1");
            IncrementalReport r1 = preDump(pid, d1, null);

            // the same dump, but taken 1 us after boot: the running process started after it
            Path early = copy(d1, tmp.resolve("early"));
            writeInventory(early, 1);
            ParentDump reused = ParentDump.open(early, pid);
            assertTrue(reused.fallback().orElseThrow().startsWith("the pid was reused: pid=" + pid + " start_time_us="),
                    reused.fallback().get());
            IncrementalReport r2 = preDump(pid, tmp.resolve("d2"), reused);
            assertEquals(0, r2.pagesUnchanged());
            assertEquals(r2.dump().pagesDumped(), r2.pagesSent());
            assertEquals(Path.of("../early"), ImageDirectory.open(tmp.resolve("d2")).parentLink().orElseThrow(),
                    "the link is still written: the chain stays valid");

            Path noDigests = copy(d1, tmp.resolve("nodigests"));
            Files.delete(noDigests.resolve(PageDigests.FILE_NAME));
            ParentDump criuLike = ParentDump.open(noDigests, pid);
            assertEquals("parent=" + noDigests + " has no pageflux-digests.bin (a CRIU dump, or one made without"
                    + " digests): every page is written", criuLike.fallback().orElseThrow());
            assertEquals(0, preDump(pid, tmp.resolve("d3"), criuLike).pagesUnchanged());

            ParentDump good = ParentDump.open(d1, pid);
            assertTrue(good.holesAllowed());
            IncrementalReport r4 = preDump(pid, tmp.resolve("d4"), good);
            assertTrue(r4.pagesUnchanged() >= target.bulkPages() + 64, "X and A did not change: " + r4.line());
            assertEquals(r1.pagesSent(), r4.pagesSent() + r4.pagesUnchanged(), "the same pages, split in sent and holes");
        }
    }

    @Test
    void aTargetThatExitedBeforeTheNextIterationGivesProcessGone() throws Exception {
        Path d1 = tmp.resolve("d1");
        int pid;
        try (SampleProcess target = SampleProcess.start(0, false)) {
            pid = target.pid();
            preDump(pid, d1, null);
            target.kill();
        }
        ProcessGoneException e = assertThrows(ProcessGoneException.class, () -> ParentDump.open(d1, pid));
        assertEquals(pid, e.pid());
        assertThrows(ProcessGoneException.class, () -> preDump(pid, tmp.resolve("d2"), null));
        assertFalse(Files.exists(tmp.resolve("d2")), "nothing that looks complete");
    }

    /** Debian's crit (CRIU 3.17), an independent decoder, sees the same holes and present pages. */
    private static void critAgrees(Path pagemap, PagemapImage expected) throws Exception {
        Path crit = Stream.of("/usr/sbin/crit", "/usr/bin/crit").map(Path::of).filter(Files::isExecutable).findFirst()
                .orElse(null);
        org.junit.jupiter.api.Assumptions.assumeTrue(crit != null, "crit is not installed (apt-get install criu)");
        Process p = new ProcessBuilder(crit.toString(), "decode", "-i", pagemap.toString())
                .redirectError(ProcessBuilder.Redirect.INHERIT).start();
        com.fasterxml.jackson.databind.JsonNode json = new com.fasterxml.jackson.databind.ObjectMapper()
                .readTree(p.getInputStream());
        assertEquals(0, p.waitFor());
        long holes = 0;
        long present = 0;
        com.fasterxml.jackson.databind.JsonNode entries = json.get("entries");
        for (int i = 1; i < entries.size(); i++) {
            int flags = entries.get(i).get("flags").asInt();
            long n = entries.get(i).get("nr_pages").asLong();
            holes += flags == PageFlags.PE_PARENT ? n : 0;
            present += PageFlags.has(flags, PageFlags.PE_PRESENT) ? n : 0;
        }
        assertEquals(expected.parentPages(), holes);
        assertEquals(expected.presentPages(), present);
        assertEquals(expected.entries().size(), entries.size() - 1);
    }

    private static Path copy(Path from, Path to) throws Exception {
        Files.createDirectory(to);
        try (Stream<Path> files = Files.list(from)) {
            for (Path f : files.sorted(Comparator.naturalOrder()).toList()) {
                if (!Files.isSymbolicLink(f)) {
                    Files.copy(f, to.resolve(f.getFileName()));
                }
            }
        }
        return to;
    }

    /** inventory.img framing (criu-formats.md §1.1): the inventory magic only, then u32 length + message. */
    private static void writeInventory(Path dir, long dumpUptime) throws Exception {
        byte[] msg = InventoryEntry.newBuilder().setImgVersion(0).setDumpUptime(dumpUptime).setPreDumpMode(2).build()
                .toByteArray();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putInt(0x58313116).putInt(msg.length).array());
        out.write(msg);
        Files.write(dir.resolve("inventory.img"), out.toByteArray());
    }
}
