package io.pageflux.pipeline.incremental;

import io.pageflux.sink.PageSinks;
import io.pageflux.source.incremental.ChangeDetection;
import io.pageflux.source.incremental.SoftDirty;
import io.pageflux.source.incremental.SoftDirtyLedger;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.LongPredicate;

/**
 * Not a test: what soft-dirty change detection costs next to page digests, on a sample target of
 * {@code args[0]} MiB (default 512) whose every 4th page of X is rewritten between iterations. This kernel has
 * no soft-dirty bits, so the probe's kernel reads the <em>real</em> {@code /proc/PID/pagemap} entries and
 * writes the real {@code clear_refs} (the frozen cost is the real one), and only sets bit 55 of the rewritten
 * pages itself (a few ns per page). Pages go to the null sink. Run like {@code PreDumpCostProbe}:
 * {@code java -cp "$cp" io.pageflux.pipeline.incremental.SoftDirtyCostProbe 512}
 */
public final class SoftDirtyCostProbe {

    private SoftDirtyCostProbe() {
    }

    public static void main(String[] args) throws Exception {
        long mib = args.length > 0 ? Long.parseLong(args[0]) : 512;
        Path ledgerDir = Files.createTempDirectory("pageflux-ledger");
        SoftDirtyLedger ledger = SoftDirtyLedger.at(ledgerDir);
        try (SampleProcess target = SampleProcess.start(mib, false)) {
            int pid = target.pid();
            long x = target.address(Region.X);
            long end = x + target.bulkPages() * 4096;
            LongPredicate[] dirty = {a -> true};
            SoftDirty.Kernel kernel = new SoftDirty.Kernel() {
                @Override
                public boolean supported() {
                    return true;
                }

                @Override
                public SoftDirty.Entries open(int p) {
                    SoftDirty.Entries real = SoftDirty.kernel().open(p);
                    return new SoftDirty.Entries() {
                        @Override
                        public void read(long address, long[] into, int count) {
                            real.read(address, into, count);
                            for (int i = 0; i < count; i++) {
                                if (dirty[0].test(address + i * 4096L)) {
                                    into[i] |= SoftDirty.PM_SOFT_DIRTY;
                                }
                            }
                        }

                        @Override
                        public void close() {
                            real.close();
                        }
                    };
                }

                @Override
                public void clear(int p) {
                    SoftDirty.clear(p);
                }
            };
            // the probe's own marking loop runs in the frozen step: compile it first, as a kernel's bits would cost
            // nothing in Java (the real path only fills the ranges the ioctl returns)
            long[] scratch = new long[(int) target.bulkPages()];
            for (int i = 0; i < 20; i++) {
                dirty[0] = i % 2 == 0 ? a -> true : a -> (a - x) / 4096 % 4 == 0;
                try (SoftDirty.Entries e = kernel.open(pid)) {
                    e.read(x, scratch, scratch.length);
                }
            }
            for (ChangeDetection method : new ChangeDetection[] {ChangeDetection.DIGEST, ChangeDetection.SOFT_DIRTY}) {
                dirty[0] = a -> true;
                IncrementalReport first = IncrementalDump.of(pid).changeDetection(method).softDirtyKernel(kernel)
                        .softDirtyLedger(ledger).to(PageSinks.nullSink()).run().block();
                print(method, "no parent          ", first);
                target.rewrite();
                // outside X: the signal handler and stdio may have written anything
                dirty[0] = a -> a < x || a >= end || (a - x) / 4096 % 4 == 0;
                IncrementalReport second = IncrementalDump.of(pid).changeDetection(method).softDirtyKernel(kernel)
                        .softDirtyLedger(ledger).parent(ParentDump.inMemory(pid, first.digests()))
                        .to(PageSinks.nullSink()).run().block();
                print(method, "1/4 of X rewritten ", second);
                dirty[0] = a -> a < x || a >= end;
                IncrementalReport third = IncrementalDump.of(pid).changeDetection(method).softDirtyKernel(kernel)
                        .softDirtyLedger(ledger).parent(ParentDump.inMemory(pid, second.digests()))
                        .to(PageSinks.nullSink()).run().block();
                print(method, "nothing rewritten  ", third);
            }
        } finally {
            try (var files = Files.list(ledgerDir)) {
                for (Path f : files.toList()) {
                    Files.delete(f);
                }
            }
            Files.delete(ledgerDir);
        }
    }

    private static void print(ChangeDetection method, String what, IncrementalReport r) {
        ChangeDetectionReport cd = r.changeDetection();
        System.out.printf("%-10s %s: sent %6d, holes %6d (not read %6d), frozen %5.2f ms (bits %5.2f ms), hashing %6.1f"
                        + " ms, duration %6.1f ms%n", method.cliName(), what, r.pagesSent(), r.pagesUnchanged(),
                cd.pagesNotRead(), r.frozen().toNanos() / 1e6, cd.frozenTime().toNanos() / 1e6,
                r.hashTime().toNanos() / 1e6, r.duration().toNanos() / 1e6);
    }
}
