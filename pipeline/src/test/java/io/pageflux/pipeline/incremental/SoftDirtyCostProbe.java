package io.pageflux.pipeline.incremental;

import io.pageflux.sink.PageSinks;
import io.pageflux.source.incremental.ChangeDetection;
import io.pageflux.source.incremental.PageRanges;
import io.pageflux.source.incremental.SoftDirty;
import io.pageflux.source.incremental.SoftDirtyLedger;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Not a test: what soft-dirty change detection costs next to page digests, on a sample target of
 * {@code args[0]} MiB (default 512) whose every 4th page of X is rewritten between iterations. This kernel has
 * no soft-dirty bits, so the probe's kernel makes the <em>real</em> {@code PAGEMAP_SCAN} calls for the
 * soft-dirty ranges and writes the real {@code clear_refs} (the frozen cost is the real one), and adds the
 * rewritten pages as ranges prepared before the freeze, as the kernel would have returned them (merging them
 * in costs a step per range). Pages go to the null sink. Run like {@code PreDumpCostProbe}:
 * {@code java -cp "$cp" io.pageflux.pipeline.incremental.SoftDirtyCostProbe 512}
 */
public final class SoftDirtyCostProbe {

    /** Above every user-space address. */
    private static final long TOP = Long.MAX_VALUE / 4096 * 4096;

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
            PageRanges[] dirty = {new PageRanges().add(0, TOP)};
            SoftDirty.Kernel kernel = new SoftDirty.Kernel() {
                @Override
                public boolean supported() {
                    return true;
                }

                @Override
                public SoftDirty.Entries open(int p) {
                    SoftDirty.Entries real = SoftDirty.kernel().open(p);
                    PageRanges found = new PageRanges();
                    return new SoftDirty.Entries() {
                        @Override
                        public void read(long address, long[] into, int count) {
                            real.read(address, into, count);
                            for (int i = 0; i < count; i++) {
                                long a = address + i * 4096L;
                                if (dirty[0].pagesWithin(a, a + 4096) == 1) {
                                    into[i] |= SoftDirty.PM_SOFT_DIRTY;
                                }
                            }
                        }

                        @Override
                        public void readDirty(long start, long stop, PageRanges into) {
                            found.clear();
                            real.readDirty(start, stop, found);
                            if (found.isEmpty()) {
                                into.addAll(dirty[0], start, stop); // this kernel: bit 55 is never set
                            } else {
                                union(found, dirty[0], start, stop, into);
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
            PageRanges all = dirty[0];
            PageRanges quarter = new PageRanges().add(0, x);
            for (long a = x; a < end; a += 4 * 4096L) {
                quarter.add(a, a + 4096);
            }
            quarter.add(end, TOP); // outside X: the signal handler and stdio may have written anything
            PageRanges outsideX = new PageRanges().add(0, x).add(end, TOP);
            // the probe's own merging runs in the frozen step: compile it first, as a kernel's ranges would cost
            // nothing in Java
            PageRanges scratch = new PageRanges();
            for (int i = 0; i < 20; i++) {
                dirty[0] = i % 2 == 0 ? all : quarter;
                try (SoftDirty.Entries e = kernel.open(pid)) {
                    scratch.clear();
                    e.readDirty(x, end, scratch);
                }
            }
            for (ChangeDetection method : new ChangeDetection[] {ChangeDetection.DIGEST, ChangeDetection.SOFT_DIRTY}) {
                dirty[0] = all;
                IncrementalReport first = IncrementalDump.of(pid).changeDetection(method).softDirtyKernel(kernel)
                        .softDirtyLedger(ledger).to(PageSinks.nullSink()).run().block();
                print(method, "no parent          ", first);
                target.rewrite();
                dirty[0] = quarter;
                IncrementalReport second = IncrementalDump.of(pid).changeDetection(method).softDirtyKernel(kernel)
                        .softDirtyLedger(ledger).parent(ParentDump.inMemory(pid, first.digests()))
                        .to(PageSinks.nullSink()).run().block();
                print(method, "1/4 of X rewritten ", second);
                dirty[0] = outsideX;
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

    /** Appends {@code a} united with {@code b}, both clipped to {@code [start, end)}, to {@code into}. */
    private static void union(PageRanges a, PageRanges b, long start, long end, PageRanges into) {
        PageRanges ca = new PageRanges().addAll(a, start, end);
        PageRanges cb = new PageRanges().addAll(b, start, end);
        long covered = start;
        int i = 0;
        int j = 0;
        while (i < ca.size() || j < cb.size()) {
            boolean fromA = j == cb.size() || (i < ca.size() && ca.start(i) <= cb.start(j));
            long s = fromA ? ca.start(i) : cb.start(j);
            long e = fromA ? ca.end(i++) : cb.end(j++);
            if (e > covered) {
                into.add(Math.max(s, covered), e);
                covered = e;
            }
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
