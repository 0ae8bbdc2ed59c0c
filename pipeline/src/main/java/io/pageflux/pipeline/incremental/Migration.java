package io.pageflux.pipeline.incremental;

import io.pageflux.pipeline.Dump;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.PageSinks;
import io.pageflux.sink.criu.CriuImageOptions;
import io.pageflux.source.DataSize;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.freeze.FreezeMode;
import io.pageflux.source.freeze.Freezer;
import io.pageflux.source.incremental.ChangeDetection;
import io.pageflux.source.incremental.SoftDirty;
import io.pageflux.source.incremental.SoftDirtyLedger;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.function.Consumer;
import java.util.function.IntFunction;

/**
 * The iterative pre-copy loop of a live migration: pre-dumps while the target runs (frozen only for each
 * scan), each sending only the pages changed since the previous one, until the changed set stops
 * shrinking or falls under a threshold; then one final full dump with the target frozen from scan to
 * commit. The target is thawed at the end (pageflux never kills it: stop it yourself once the images are
 * safe, or restore elsewhere and then stop it).
 *
 * <p>Destinations: a local directory ({@link #toDirectory}: {@code DIR/pre-1}, {@code DIR/pre-2}, ...,
 * {@code DIR/dump}, each linked to the previous with a relative {@code parent} link and carrying its
 * digests), or any sinks ({@link #toSinks}, e.g. a page server: the digests of the previous iteration are
 * then kept in memory; the server must link each session to the previous one).
 *
 * <p>Blocking: {@link #run()} returns when the final dump is done.
 */
public final class Migration {

    /** Default iteration cap (pre-dumps before the final dump). */
    public static final int DEFAULT_MAX_PRE_DUMPS = 8;
    /** Default: stop pre-dumping once an iteration sends at most this many pages (4 MiB). */
    public static final long DEFAULT_THRESHOLD_PAGES = 1024;

    private final int pid;
    private Freezer freezer;
    private Path dir;
    private IntFunction<PageSink> sinks;
    private String destination;
    private ParentDump initialParent;
    private int maxPreDumps = DEFAULT_MAX_PRE_DUMPS;
    private long thresholdPages = DEFAULT_THRESHOLD_PAGES;
    private DataSize budget = Dump.DEFAULT_BUDGET;
    private DataSize chunkSize = Dump.DEFAULT_CHUNK_SIZE;
    private boolean verify;
    private boolean force;
    private boolean directIo = true;
    private Consumer<Iteration> listener = i -> { };
    private ChangeDetection changeDetection = ChangeDetection.AUTO;
    private SoftDirty.Kernel softDirty = SoftDirty.kernel();
    private SoftDirtyLedger ledger = SoftDirtyLedger.system();

    private Migration(int pid) {
        this.pid = pid;
        this.freezer = Freezer.ptrace(pid);
    }

    public static Migration of(int pid) {
        return new Migration(pid);
    }

    public Migration freezer(Freezer freezer) {
        this.freezer = Objects.requireNonNull(freezer, "freezer");
        return this;
    }

    /** Images into {@code DIR/pre-N} and {@code DIR/dump}. */
    public Migration toDirectory(Path dir, boolean force) {
        this.dir = Objects.requireNonNull(dir, "dir");
        this.force = force;
        this.sinks = null;
        this.destination = "dir:" + dir;
        return this;
    }

    /**
     * With {@link #toDirectory}: write pages files with {@code O_DIRECT} (the default) or through
     * the page cache ({@code false}); see {@link CriuImageOptions#withDirectIo}.
     */
    public Migration directIo(boolean directIo) {
        this.directIo = directIo;
        return this;
    }

    /**
     * Each iteration's pages into {@code sinkForIteration.apply(n)} (n = 1, 2, ...; the final dump gets
     * the next number); holes are sent as PE_PARENT runs against the previous iteration.
     */
    public Migration toSinks(IntFunction<PageSink> sinkForIteration, String description) {
        this.sinks = Objects.requireNonNull(sinkForIteration, "sinkForIteration");
        this.dir = null;
        this.destination = description;
        return this;
    }

    /** Build the first pre-dump on an existing dump (e.g. from {@code pageflux pre-dump}). */
    public Migration parent(ParentDump parent) {
        this.initialParent = parent;
        return this;
    }

    public Migration maxPreDumps(int max) {
        if (max < 0) {
            throw new IllegalArgumentException("maxPreDumps must be >= 0: " + max);
        }
        this.maxPreDumps = max;
        return this;
    }

    public Migration thresholdPages(long pages) {
        this.thresholdPages = pages;
        return this;
    }

    public Migration budget(DataSize budget) {
        this.budget = Objects.requireNonNull(budget, "budget");
        return this;
    }

    public Migration chunkSize(DataSize chunkSize) {
        this.chunkSize = Objects.requireNonNull(chunkSize, "chunkSize");
        return this;
    }

    /** Compare the final dump's chain with the target's memory before thawing it (directory only). */
    public Migration verify(boolean verify) {
        this.verify = verify;
        return this;
    }

    /** How every iteration finds unchanged pages (default {@link ChangeDetection#AUTO}). */
    public Migration changeDetection(ChangeDetection detection) {
        this.changeDetection = Objects.requireNonNull(detection, "detection");
        return this;
    }

    /** The kernel's soft-dirty bits (default {@link SoftDirty#kernel()}; tests inject recorded pagemaps). */
    public Migration softDirtyKernel(SoftDirty.Kernel kernel) {
        this.softDirty = Objects.requireNonNull(kernel, "kernel");
        return this;
    }

    /** Where the last clear of the soft-dirty bits is recorded (default {@link SoftDirtyLedger#system()}). */
    public Migration softDirtyLedger(SoftDirtyLedger ledger) {
        this.ledger = Objects.requireNonNull(ledger, "ledger");
        return this;
    }

    /** Called after each iteration, pre-dumps and the final dump (for progress lines). */
    public Migration onIteration(Consumer<Iteration> listener) {
        this.listener = Objects.requireNonNull(listener, "listener");
        return this;
    }

    /**
     * One iteration's outcome.
     *
     * @param number      1, 2, ...
     * @param finalDump   the last, frozen, full dump
     * @param destination where its pages went
     * @param report      what it did
     * @param stopReason  for the last pre-dump: why the loop stopped ({@code null} otherwise)
     */
    public record Iteration(int number, boolean finalDump, String destination, IncrementalReport report,
                            String stopReason) {

        public String line() {
            return String.format("%s %d: %s%s", finalDump ? "final dump" : "pre-dump", number, report.line(),
                    stopReason == null ? "" : " — " + stopReason);
        }
    }

    /**
     * Runs the loop.
     *
     * @return every iteration, the final dump last
     * @throws MigrationException the target exited between or during iterations (what was completed is said),
     *                            or an iteration failed
     * @throws IllegalStateException no destination
     */
    public List<Iteration> run() {
        if (dir == null && sinks == null) {
            throw new IllegalStateException("no destination: call toDirectory or toSinks");
        }
        if (verify && dir == null) {
            throw new IllegalStateException("verify needs a directory destination");
        }
        List<Iteration> done = new ArrayList<>();
        ParentDump parent = initialParent;
        long previousSent = Long.MAX_VALUE;
        int n = 1;
        for (; n <= maxPreDumps; n++) {
            Path out = dir == null ? null : dir.resolve("pre-" + n);
            IncrementalReport r = iteration(n, IncrementalDump.of(pid).freezer(freezer).mode(FreezeMode.PRE_DUMP)
                    .preDump(true).parent(parent), out, done);
            String stop = null;
            if (r.pagesSent() <= thresholdPages) {
                stop = "under the threshold of " + thresholdPages + " pages";
            } else if (r.pagesSent() >= previousSent) {
                stop = "the changed set stopped shrinking (" + previousSent + " -> " + r.pagesSent() + " pages)";
            } else if (n == maxPreDumps) {
                stop = "reached the limit of " + maxPreDumps + " pre-dumps";
            }
            Iteration it = new Iteration(n, false, out == null ? destination : "dir:" + out, r, stop);
            done.add(it);
            listener.accept(it);
            try {
                parent = out == null ? ParentDump.inMemory(pid, r.digests()) : ParentDump.open(out, pid);
            } catch (RuntimeException e) {
                throw failure(n + 1, done, e);
            }
            previousSent = r.pagesSent();
            if (stop != null) {
                n++;
                break;
            }
        }
        Path out = dir == null ? null : dir.resolve("dump");
        IncrementalReport last = iteration(n, IncrementalDump.of(pid).freezer(freezer).mode(FreezeMode.DUMP)
                .preDump(false).parent(parent).verifyFrozen(verify), out, done);
        Iteration it = new Iteration(n, true, out == null ? destination : "dir:" + out, last, null);
        done.add(it);
        listener.accept(it);
        return done;
    }

    private IncrementalReport iteration(int n, IncrementalDump dump, Path out, List<Iteration> done) {
        PageSink sink = out != null ? PageSinks.criuImages(out,
                CriuImageOptions.defaults().withForce(force).withDirectIo(directIo))
                : sinks.apply(n);
        IncrementalDump d = dump.to(sink).budget(budget).chunkSize(chunkSize).changeDetection(changeDetection)
                .softDirtyKernel(softDirty).softDirtyLedger(ledger);
        if (out != null) {
            d = d.digestsDir(out);
        }
        try {
            return d.run().block();
        } catch (RuntimeException e) {
            throw failure(n, done, e);
        }
    }

    private MigrationException failure(int n, List<Iteration> done, RuntimeException e) {
        Throwable cause = reactor.core.Exceptions.unwrap(e);
        String completed = done.isEmpty() ? "no iteration was completed"
                : "iterations 1.." + done.size() + " are complete (" + done.get(done.size() - 1).destination() + ")";
        if (cause instanceof ProcessGoneException gone) {
            return new MigrationException(pid, "pid=" + pid + " exited " + (done.isEmpty() ? "before the first"
                    : "after iteration " + done.size() + ", during") + " iteration " + n + ": " + gone.getMessage()
                    + "; " + completed + " but there is no final dump", cause);
        }
        return new MigrationException(pid, "iteration " + n + " of the migration of pid=" + pid + " failed: "
                + cause.getMessage() + "; " + completed, cause);
    }

    public int pid() {
        return pid;
    }
}
