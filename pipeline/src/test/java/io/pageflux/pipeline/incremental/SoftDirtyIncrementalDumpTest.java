package io.pageflux.pipeline.incremental;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.PageSinks;
import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.source.PagemapId;
import io.pageflux.source.freeze.FreezeMode;
import io.pageflux.source.freeze.Freezer;
import io.pageflux.source.incremental.ChangeDetection;
import io.pageflux.source.incremental.PageDigests;
import io.pageflux.source.incremental.SoftDirty;
import io.pageflux.source.incremental.SoftDirtyLedger;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongPredicate;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The soft-dirty path of a real incremental pre-dump of a live sample. This kernel has no soft-dirty bits,
 * so a test double answers the pagemap lookups: bit 55 per page as the test's fixture says, everything else
 * as a present page; clearing records the state of the target's threads at that moment.
 */
class SoftDirtyIncrementalDumpTest {

    @TempDir
    Path tmp;

    /** A kernel with soft-dirty bits, as far as pageflux can tell. */
    static final class FixtureKernel implements SoftDirty.Kernel {
        final boolean supported;
        volatile LongPredicate dirty = address -> true;
        /** Per clear: the state letter of every thread of the target (t = stopped by the tracer). */
        final List<String> clears = new CopyOnWriteArrayList<>();
        final AtomicLong entriesRead = new AtomicLong();
        final SoftDirtyLedger ledger;

        FixtureKernel(boolean supported, Path ledger) {
            this.supported = supported;
            this.ledger = SoftDirtyLedger.at(ledger);
        }

        @Override
        public boolean supported() {
            return supported;
        }

        @Override
        public SoftDirty.Entries open(int pid) {
            return new SoftDirty.Entries() {
                @Override
                public void read(long address, long[] into, int count) {
                    for (int i = 0; i < count; i++) {
                        long a = address + i * 4096L;
                        into[i] = SoftDirty.PM_PRESENT | (dirty.test(a) ? SoftDirty.PM_SOFT_DIRTY : 0);
                    }
                    entriesRead.addAndGet(count);
                }

                @Override
                public void close() {
                }
            };
        }

        @Override
        public void clear(int pid) {
            StringBuilder states = new StringBuilder();
            try (Stream<Path> tasks = Files.list(Path.of("/proc", Integer.toString(pid), "task"))) {
                for (Path task : tasks.toList()) {
                    String stat = Files.readString(task.resolve("stat"), StandardCharsets.US_ASCII);
                    states.append(stat.charAt(stat.lastIndexOf(')') + 2));
                }
            } catch (IOException e) {
                throw new AssertionError(e);
            }
            clears.add(states.toString());
        }
    }

    private static IncrementalDump dump(int pid, FixtureKernel kernel, Path out, ParentDump parent) {
        return IncrementalDump.of(pid).softDirtyKernel(kernel).softDirtyLedger(kernel.ledger).parent(parent)
                .to(PageSinks.criuImages(out)).digestsDir(out);
    }

    /** X pages of {@code d}'s pagemap: index i is true if page i is present, false if a hole. */
    private static boolean[] xPresent(Path d, SampleProcess target) throws IOException {
        long x = target.address(Region.X);
        boolean[] present = new boolean[(int) target.bulkPages()];
        int seen = 0;
        for (PagemapImage.Entry e : ImageDirectory.open(d).pagemap(PagemapId.task(target.pid())).orElseThrow().entries()) {
            for (long p = 0; p < e.nrPages(); p++) {
                long page = (e.vaddr() + p * 4096 - x) / 4096;
                if (e.vaddr() + p * 4096 >= x && page < present.length) {
                    present[(int) page] = e.present();
                    seen++;
                }
            }
        }
        assertEquals(present.length, seen, "every X page is in " + d);
        return present;
    }

    @Test
    void cleanPagesBecomeHolesWithoutBeingReadAndTheBitsAreClearedWhileFrozen() throws Exception {
        try (SampleProcess target = SampleProcess.start(4, false)) {
            int pid = target.pid();
            long x = target.address(Region.X);
            long bulk = target.bulkPages();
            FixtureKernel kernel = new FixtureKernel(true, tmp.resolve("ledger"));

            Path d1 = tmp.resolve("d1");
            IncrementalReport r1 = dump(pid, kernel, d1, null).run().block();
            assertEquals("soft-dirty", r1.changeDetection().method());
            assertTrue(r1.changeDetection().reason().isEmpty(), r1.changeDetection().toString());
            assertEquals(0, r1.pagesUnchanged(), "no parent: every page is read");
            assertEquals(0, r1.changeDetection().pagesNotRead());
            assertTrue(r1.changeDetection().softDirtyCleared());
            assertEquals(List.of("t"), kernel.clears, "cleared once, while the only thread was stopped by the tracer");
            assertTrue(kernel.entriesRead.get() >= r1.dump().pagesPlanned(), "an entry per planned page (and the"
                    + " warm-up's)");
            PageDigests digests1 = PageDigests.read(d1);
            assertTrue(digests1.softDirtyCleared(), "the next iteration may use the bits");
            assertEquals(r1.pagesSent(), digests1.pages());

            // a truthful fixture: the rewrite wrote every 4th page of X; any page outside X may have been written
            // (the signal handler, stdio), so those are reported dirty
            assertEquals(bulk / 4, target.rewrite());
            kernel.dirty = a -> a < x || a >= x + bulk * 4096 || (a - x) / 4096 % 4 == 0;
            Path d2 = tmp.resolve("d2");
            IncrementalReport r2 = dump(pid, kernel, d2, ParentDump.open(d1, pid)).run().block();
            assertEquals("soft-dirty", r2.changeDetection().method());
            assertEquals(bulk - bulk / 4, r2.pagesUnchanged(), "exactly the clean X pages are holes");
            assertEquals(r2.pagesUnchanged(), r2.changeDetection().pagesNotRead(), "none of them was read");
            assertEquals(List.of("t", "t"), kernel.clears);
            ImageDirectory i2 = ImageDirectory.open(d2);
            assertEquals(r2.pagesUnchanged(), i2.parentPages());
            assertEquals(r2.pagesSent(), i2.presentPages());
            boolean[] present = xPresent(d2, target);
            for (int p = 0; p < bulk; p++) {
                assertEquals(p % 4 == 0, present[p], "X page " + p);
            }
            PageDigests digests2 = PageDigests.read(d2);
            assertEquals(r2.pagesSent() + r2.pagesUnchanged(), digests2.pages(), "holes keep the parent's digest");
            assertEquals(digests1.digest(PagemapId.task(pid), x + 4096), digests2.digest(PagemapId.task(pid), x + 4096));
            VerifyReport v2 = Verifier.verify(d2, pid, Freezer.ptrace(pid));
            assertTrue(v2.ok(), v2.text());
            assertEquals(bulk - bulk / 4, v2.pagesFromParents());

            // a fixture that hides half the writes: pages 4, 12, 20, ... changed but are reported clean. They
            // become holes and the chain is stale exactly there — proof that holes are not read (a digest
            // iteration would have found them)
            assertEquals(bulk / 4, target.rewrite());
            kernel.dirty = a -> a < x || a >= x + bulk * 4096 || (a - x) / 4096 % 8 == 0;
            Path d3 = tmp.resolve("d3");
            IncrementalReport r3 = dump(pid, kernel, d3, ParentDump.open(d2, pid)).run().block();
            assertEquals(bulk - bulk / 8, r3.changeDetection().pagesNotRead());
            boolean[] present3 = xPresent(d3, target);
            for (int p = 0; p < bulk; p++) {
                assertEquals(p % 8 == 0, present3[p], "X page " + p);
            }
            VerifyReport v3 = Verifier.verify(d3, pid, Freezer.ptrace(pid));
            assertFalse(v3.ok());
            assertEquals(bulk / 8, v3.bytesDiffer(), v3.text());
            assertTrue(v3.examples().stream().anyMatch(m -> m.startsWith(String.format("address=0x%x ", x + 4 * 4096))),
                    v3.text());
            assertTrue(target.isAlive());
        }
    }

    @Test
    void aParentThatDidNotClearTheBitsMeansDigestsOnceThenSoftDirty() throws Exception {
        try (SampleProcess target = SampleProcess.start(1, false)) {
            int pid = target.pid();
            FixtureKernel kernel = new FixtureKernel(true, tmp.resolve("ledger"));
            Path d1 = tmp.resolve("d1");
            IncrementalReport r1 = dump(pid, kernel, d1, null).changeDetection(ChangeDetection.DIGEST).run().block();
            assertEquals("digest", r1.changeDetection().method());
            assertTrue(r1.changeDetection().reason().isEmpty());
            assertEquals(List.of(), kernel.clears, "digest leaves the bits alone");
            assertFalse(PageDigests.read(d1).softDirtyCleared());

            Path d2 = tmp.resolve("d2");
            IncrementalReport r2 = dump(pid, kernel, d2, ParentDump.open(d1, pid)).run().block();
            assertEquals("digest", r2.changeDetection().method());
            assertEquals("parent dir=" + d1 + " did not clear the soft-dirty bits while frozen (made with page digests,"
                    + " by CRIU or by an older pageflux), so a clear bit says nothing about it: page digests used this"
                    + " time; the bits were cleared for the next iteration", r2.changeDetection().reason().orElseThrow());
            assertEquals(List.of("t"), kernel.clears);
            assertTrue(r2.changeDetection().softDirtyCleared());
            assertEquals(0, r2.changeDetection().pagesNotRead());
            assertTrue(r2.pagesUnchanged() > 0, "digests found the unchanged pages");
            assertTrue(PageDigests.read(d2).softDirtyCleared());

            kernel.dirty = a -> false; // nothing written since d2
            Path d3 = tmp.resolve("d3");
            IncrementalReport r3 = dump(pid, kernel, d3, ParentDump.open(d2, pid)).run().block();
            assertEquals("soft-dirty", r3.changeDetection().method());
            assertEquals(r3.pagesUnchanged(), r3.changeDetection().pagesNotRead());
            // clean pages that d2 did not have (if the scan found any new ones) are read all the same
            assertEquals(ImageDirectory.open(d3).presentPages(), r3.pagesSent());
            assertTrue(r3.pagesUnchanged() >= PageDigests.read(d2).pages() - r3.pagesSent());
            assertEquals(List.of("t", "t"), kernel.clears);
            VerifyReport v3 = Verifier.verify(d3, pid, Freezer.ptrace(pid));
            assertEquals(3, v3.chainDepth());
        }
    }

    @Test
    void autoWithoutSoftDirtyUsesDigestsAndSoftDirtyIsRefused() throws Exception {
        try (SampleProcess target = SampleProcess.start(1, false)) {
            int pid = target.pid();
            FixtureKernel none = new FixtureKernel(false, tmp.resolve("ledger"));
            Path d1 = tmp.resolve("d1");
            IncrementalReport r1 = dump(pid, none, d1, null).run().block();
            assertEquals("digest", r1.changeDetection().method());
            assertTrue(r1.changeDetection().reason().orElseThrow().contains("has no soft-dirty bits: it was built without"
                    + " CONFIG_MEM_SOFT_DIRTY"), r1.changeDetection().toString());
            assertEquals(List.of(), none.clears);
            assertFalse(r1.changeDetection().softDirtyCleared());
            assertTrue(r1.line().endsWith(", method digest"), r1.line());

            ChangeDetection.SoftDirtyUnsupportedException e = assertThrows(
                    ChangeDetection.SoftDirtyUnsupportedException.class,
                    () -> dump(pid, none, tmp.resolve("d2"), null).changeDetection(ChangeDetection.SOFT_DIRTY).run());
            assertTrue(e.getMessage().startsWith("cannot use soft-dirty change detection for pid=" + pid + ": this kernel"),
                    e.getMessage());
            assertTrue(e.getMessage().contains("CONFIG_MEM_SOFT_DIRTY") && e.getMessage().contains(
                    "use --change-detection digest"), e.getMessage());

            FixtureKernel soft = new FixtureKernel(true, tmp.resolve("ledger"));
            ChangeDetection.SoftDirtyUnsupportedException unfrozen = assertThrows(
                    ChangeDetection.SoftDirtyUnsupportedException.class, () -> dump(pid, soft, tmp.resolve("d3"), null)
                            .mode(FreezeMode.NONE).changeDetection(ChangeDetection.SOFT_DIRTY).run());
            assertTrue(unfrozen.getMessage().contains("the target is not frozen for the scan (mode none)"),
                    unfrozen.getMessage());
            IncrementalReport none4 = dump(pid, soft, tmp.resolve("d4"), null).mode(FreezeMode.NONE).run().block();
            assertEquals("digest", none4.changeDetection().method());
            assertTrue(none4.changeDetection().reason().orElseThrow().startsWith("the target is not frozen"));
            assertEquals(List.of(), soft.clears, "never cleared while the target runs");
            assertFalse(Files.exists(tmp.resolve("d2").resolve("inventory.img")));
            assertTrue(target.isAlive());
        }
    }

    @Test
    void aFrozenDumpUsesTheBitsAndVerifiesBeforeThawing() throws Exception {
        try (SampleProcess target = SampleProcess.start(2, true)) {
            int pid = target.pid();
            long x = target.address(Region.X);
            long bulk = target.bulkPages();
            FixtureKernel kernel = new FixtureKernel(true, tmp.resolve("ledger"));
            ParentDump parent = null;
            List<Long> holes = new ArrayList<>();
            for (int i = 1; i <= 2; i++) {
                Path d = tmp.resolve("it" + i);
                // the writer touches every 64th page of X: report those, and everything outside X, dirty
                kernel.dirty = a -> a < x || a >= x + bulk * 4096 || (a - x) / 4096 % 64 == 0;
                IncrementalReport r = dump(pid, kernel, d, parent).mode(FreezeMode.DUMP).verifyFrozen(true).run()
                        .block();
                assertEquals("soft-dirty", r.changeDetection().method());
                assertTrue(r.verify().orElseThrow().ok(), r.verify().orElseThrow().text());
                holes.add(r.changeDetection().pagesNotRead());
                parent = ParentDump.open(d, pid);
                Thread.sleep(20);
            }
            assertEquals(List.of(0L, bulk - bulk / 64), holes);
            assertEquals(List.of("t", "t"), kernel.clears);
        }
    }

    @Test
    void aMigrationUsesTheBitsInEveryIterationAfterTheFirst() throws Exception {
        try (SampleProcess target = SampleProcess.start(4, true)) {
            int pid = target.pid();
            long x = target.address(Region.X);
            long bulk = target.bulkPages();
            FixtureKernel kernel = new FixtureKernel(true, tmp.resolve("ledger"));
            kernel.dirty = a -> a < x || a >= x + bulk * 4096 || (a - x) / 4096 % 64 == 0;
            List<Migration.Iteration> its = Migration.of(pid).toDirectory(tmp, false).verify(true).softDirtyKernel(kernel)
                    .softDirtyLedger(kernel.ledger).run();
            assertTrue(its.size() >= 2);
            for (Migration.Iteration it : its) {
                assertEquals("soft-dirty", it.report().changeDetection().method(), it.line());
                assertTrue(it.line().endsWith(", method soft-dirty") || it.stopReason() != null, it.line());
                assertEquals(it.number() == 1 ? 0 : bulk - bulk / 64, it.report().changeDetection().pagesNotRead(),
                        it.line());
            }
            Migration.Iteration last = its.get(its.size() - 1);
            assertTrue(last.report().verify().orElseThrow().ok(), last.report().verify().get().text());
            assertEquals(its.size(), kernel.clears.size(), "one clear per iteration, each while frozen");
            assertTrue(kernel.clears.stream().allMatch(s -> s.equals("t")), kernel.clears.toString());
        }
    }

    @Test
    void aBranchedChainOrADumpThatFailedAfterClearingFallsBackToDigests() throws Exception {
        try (SampleProcess target = SampleProcess.start(1, false)) {
            int pid = target.pid();
            FixtureKernel kernel = new FixtureKernel(true, tmp.resolve("ledger"));
            kernel.dirty = a -> false;
            Path d1 = tmp.resolve("d1");
            dump(pid, kernel, d1, null).run().block();
            Path d2 = tmp.resolve("d2");
            IncrementalReport r2 = dump(pid, kernel, d2, ParentDump.open(d1, pid)).run().block();
            assertEquals("soft-dirty", r2.changeDetection().method());

            // d1 again: d2's clear came after it, so pages written between d1 and d2 would look clean
            Path d3 = tmp.resolve("d3");
            IncrementalReport r3 = dump(pid, kernel, d3, ParentDump.open(d1, pid)).run().block();
            assertEquals("digest", r3.changeDetection().method());
            long d1Uptime = PageDigests.read(d1).dumpUptimeMicros();
            long d2Uptime = PageDigests.read(d2).dumpUptimeMicros();
            assertEquals("the soft-dirty bits of pid=" + pid + " were cleared after parent dir=" + d1 + " (dump_uptime="
                    + d1Uptime + ") by the dump with dump_uptime=" + d2Uptime + " (a branched chain): page digests used"
                    + " this time; the bits were cleared for the next iteration", r3.changeDetection().reason()
                    .orElseThrow());
            assertTrue(r3.changeDetection().softDirtyCleared());

            // a dump that cleared and then died: its clear is recorded as unfinished
            kernel.ledger.tracking(kernel).clear(pid);
            Path d4 = tmp.resolve("d4");
            IncrementalReport r4 = dump(pid, kernel, d4, ParentDump.open(d3, pid)).run().block();
            assertEquals("digest", r4.changeDetection().method());
            assertTrue(r4.changeDetection().reason().orElseThrow().startsWith("no record that parent dir=" + d3),
                    r4.changeDetection().reason().toString());
            Path d5 = tmp.resolve("d5");
            IncrementalReport r5 = dump(pid, kernel, d5, ParentDump.open(d4, pid)).run().block();
            assertEquals("soft-dirty", r5.changeDetection().method(), "d4 completed its clear");
            assertTrue(Verifier.verify(d5, pid, Freezer.ptrace(pid)).ok());
        }
    }
}
