package io.pageflux.bench;

import io.pageflux.source.DumpStats;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.PageScan;
import io.pageflux.source.RegionPolicy;
import io.pageflux.source.ScannerKind;
import io.pageflux.source.Smaps;
import java.util.List;

/**
 * How long finding the dumpable pages takes, alone: {@link PageScan} over a live process's regions
 * with one {@link ScannerKind}, iterated to the end (no page is read). Used by
 * {@code benchmarks/whole-process.sh --sparse} to compare {@code PAGEMAP_SCAN} with reading
 * {@code /proc/PID/pagemap}.
 *
 * <pre>
 *   java -cp benchmarks/target/benchmarks.jar io.pageflux.bench.ScanTime PID pagemap-scan|pagemap-file RUNS
 * </pre>
 *
 * Prints one line per run: {@code run=N seconds=S pages=P runs=R scanner=K}. The regions are read once,
 * before the first run; the first run also pays class loading.
 */
public final class ScanTime {

    private ScanTime() {
    }

    public static void main(String[] args) {
        if (args.length < 3) {
            System.err.println("usage: ScanTime PID pagemap-scan|pagemap-file RUNS");
            System.exit(2);
        }
        int pid = Integer.parseInt(args[0]);
        ScannerKind kind = ScannerKind.valueOf(args[1].toUpperCase().replace('-', '_'));
        int runs = Integer.parseInt(args[2]);
        List<MemoryRegion> regions = Smaps.read(pid);
        for (int i = 1; i <= runs; i++) {
            long started = System.nanoTime();
            long pages = 0;
            long count = 0;
            try (PageScan scan = PageScan.open(pid, regions, RegionPolicy.criuFullDump(), kind, new DumpStats(),
                    false)) {
                while (scan.hasNext()) {
                    pages += scan.next().run().pages();
                    count++;
                }
            }
            double seconds = (System.nanoTime() - started) / 1e9;
            System.out.printf("run=%d seconds=%.4f pages=%d runs=%d scanner=%s%n", i, seconds, pages, count, kind);
        }
    }
}
