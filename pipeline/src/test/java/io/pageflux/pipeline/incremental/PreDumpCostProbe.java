package io.pageflux.pipeline.incremental;

import io.pageflux.sink.PageSinks;
import io.pageflux.source.sample.SampleProcess;

/**
 * Not a test: measures what a pre-dump of a sample target with {@code args[0]} MiB (default 512) costs,
 * without a parent and then against it after the target rewrote every 4th page of its memory: frozen
 * time, pages sent and unchanged, hashing time, duration. Pages go to the null sink (the disk is not
 * measured). Run with the pipeline's test class path:
 * {@code java -cp "$(cat cp.txt):pipeline/target/classes:pipeline/target/test-classes" io.pageflux.pipeline.incremental.PreDumpCostProbe 512}
 */
public final class PreDumpCostProbe {

    private PreDumpCostProbe() {
    }

    public static void main(String[] args) throws Exception {
        long mib = args.length > 0 ? Long.parseLong(args[0]) : 512;
        try (SampleProcess target = SampleProcess.start(mib, false)) {
            int pid = target.pid();
            IncrementalReport first = IncrementalDump.of(pid).to(PageSinks.nullSink()).run().block();
            print("pre-dump, no parent     ", first);
            long rewritten = target.rewrite();
            IncrementalReport second = IncrementalDump.of(pid).parent(ParentDump.inMemory(pid, first.digests()))
                    .to(PageSinks.nullSink()).run().block();
            print("pre-dump against parent ", second);
            IncrementalReport third = IncrementalDump.of(pid).parent(ParentDump.inMemory(pid, second.digests()))
                    .to(PageSinks.nullSink()).run().block();
            print("again, nothing rewritten", third);
            System.out.printf("target %d MiB, rewritten %d pages; digests in memory: %d bytes for %d pages%n", mib,
                    rewritten, second.digests().memoryBytes(), second.digests().pages());
        }
    }

    private static void print(String what, IncrementalReport r) {
        System.out.printf("%s: %s, hashing %.1f ms, read %.0f MiB/s%n", what, r.line(), r.hashTime().toNanos() / 1e6,
                r.dump().bytesPerSecond() / (1 << 20));
    }
}
