package io.pageflux.source.freeze;

import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import io.pageflux.source.PageChunk;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.RegionPolicy;
import io.pageflux.source.sample.SampleProcess;
import java.util.ArrayList;
import java.util.List;

/**
 * Measures the frozen time of pre-dumps (scan frozen, read running, pages discarded) of a sample target
 * with {@code args[0]} MiB of touched memory, {@code args[1]} times; prints each freeze and the median.
 * Not a test: run it with the test class path, e.g.
 * {@code java -cp "$(cat cp.txt):sources/target/classes:sources/target/test-classes" io.pageflux.source.freeze.FrozenTimeProbe 512 10}.
 */
public final class FrozenTimeProbe {

    private FrozenTimeProbe() {
    }

    public static void main(String[] args) throws Exception {
        long mib = args.length > 0 ? Long.parseLong(args[0]) : 512;
        int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 10;
        try (SampleProcess target = SampleProcess.start(mib, false)) {
            int pid = target.pid();
            FreezingSource source = FreezingSource.of(pid, Freezer.ptrace(pid), FreezeMode.PRE_DUMP);
            List<Double> frozenMs = new ArrayList<>();
            for (int i = 0; i < rounds; i++) {
                BufferPool pool = BufferPool.create(DataSize.ofMebibytes(64), DataSize.ofMebibytes(4));
                long t0 = System.nanoTime();
                Long pages = source.pages(ReadOptions.of(pool).withPolicy(RegionPolicy.criuPreDump()))
                        .map(chunk -> {
                            long n = chunk.pages();
                            chunk.release();
                            return n;
                        }).reduce(0L, Long::sum)
                        .block();
                long total = System.nanoTime() - t0;
                FreezeRecord r = source.lastFreeze().orElseThrow();
                frozenMs.add(r.frozen().toNanos() / 1e6);
                System.out.printf("round %d: %s; pages=%d total %.1f ms%n", i, r, pages, total / 1e6);
            }
            List<Double> sorted = new ArrayList<>(frozenMs);
            sorted.sort(Double::compare);
            System.out.printf("pre-dump of %d MiB: frozen median %.3f ms, min %.3f ms, max %.3f ms over %d rounds%n",
                    mib, sorted.get(sorted.size() / 2), sorted.get(0), sorted.get(sorted.size() - 1), rounds);
        }
    }
}
