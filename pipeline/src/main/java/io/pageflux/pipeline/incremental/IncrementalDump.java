package io.pageflux.pipeline.incremental;

import io.pageflux.pipeline.Dump;
import io.pageflux.pipeline.DumpProgress;
import io.pageflux.pipeline.DumpReport;
import io.pageflux.sink.PageSink;
import io.pageflux.source.DataSize;
import io.pageflux.source.RegionPolicy;
import io.pageflux.source.freeze.FreezeMode;
import io.pageflux.source.freeze.FreezeRecord;
import io.pageflux.source.freeze.Freezer;
import io.pageflux.source.freeze.FreezingSource;
import io.pageflux.source.freeze.FrozenProcess;
import io.pageflux.source.incremental.ChangeDetection;
import io.pageflux.source.incremental.PageChangeDetector;
import io.pageflux.source.incremental.PageDigests;
import io.pageflux.source.incremental.SoftDirty;
import io.pageflux.source.incremental.SoftDirtyLedger;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;

/**
 * One iteration of an incremental dump: freeze the target as {@link FreezeMode} says, read its pages,
 * turn the pages unchanged since the {@link ParentDump parent} into PE_PARENT holes (soft-dirty bits or page
 * digests: {@link ChangeDetection}, {@link PageChangeDetector}), write them through the sink(s) of a {@link Dump}, and leave the digests of this
 * dump for the next iteration ({@code pageflux-digests.bin} next to the images, and in the report).
 *
 * <pre>{@code
 * IncrementalReport r1 = IncrementalDump.of(pid).to(PageSinks.criuImages(d1)).digestsDir(d1).run().block();
 * rewrite...
 * IncrementalReport r2 = IncrementalDump.of(pid).parent(ParentDump.open(d1, pid))
 *         .to(PageSinks.criuImages(d2)).digestsDir(d2).run().block();   // r2.pagesSent(): the changed pages
 * }</pre>
 *
 * <p>Modes: {@link FreezeMode#PRE_DUMP} (default) stops the target only for the scan; {@link FreezeMode#DUMP}
 * keeps it stopped from before the scan until the sinks committed — and, with {@link #verifyFrozen}, until
 * the written chain was compared with its memory. The target is always thawed, also on failure.
 *
 * <p>Immutable; each {@code withX}-style method returns a modified copy.
 */
public final class IncrementalDump {

    private final int pid;
    private final Freezer freezer;
    private final FreezeMode mode;
    private final boolean preDump;
    private final ParentDump parent;
    private final List<PageSink> sinks;
    private final Path digestsDir;
    private final DataSize budget;
    private final DataSize chunkSize;
    private final boolean verifyFrozen;
    private final Duration progressInterval;
    private final Consumer<DumpProgress> progress;
    private final ChangeDetection changeDetection;
    private final SoftDirty.Kernel softDirty;
    private final SoftDirtyLedger ledger;

    private IncrementalDump(int pid, Freezer freezer, FreezeMode mode, boolean preDump, ParentDump parent,
                            List<PageSink> sinks, Path digestsDir, DataSize budget, DataSize chunkSize,
                            boolean verifyFrozen, Duration progressInterval, Consumer<DumpProgress> progress,
                            ChangeDetection changeDetection, SoftDirty.Kernel softDirty, SoftDirtyLedger ledger) {
        this.pid = pid;
        this.freezer = freezer;
        this.mode = mode;
        this.preDump = preDump;
        this.parent = parent;
        this.sinks = sinks;
        this.digestsDir = digestsDir;
        this.budget = budget;
        this.chunkSize = chunkSize;
        this.verifyFrozen = verifyFrozen;
        this.progressInterval = progressInterval;
        this.progress = progress;
        this.changeDetection = changeDetection;
        this.softDirty = softDirty;
        this.ledger = ledger;
    }

    /** A pre-dump of {@code pid}: ptrace freezer, frozen for the scan only, no parent, no sink yet. */
    public static IncrementalDump of(int pid) {
        return new IncrementalDump(pid, Freezer.ptrace(pid), FreezeMode.PRE_DUMP, true, null, List.of(), null,
                Dump.DEFAULT_BUDGET, Dump.DEFAULT_CHUNK_SIZE, false, null, null, ChangeDetection.AUTO,
                SoftDirty.kernel(), SoftDirtyLedger.system());
    }

    public IncrementalDump freezer(Freezer freezer) {
        return new IncrementalDump(pid, Objects.requireNonNull(freezer, "freezer"), mode, preDump, parent, sinks,
                digestsDir, budget, chunkSize, verifyFrozen, progressInterval, progress, changeDetection, softDirty, ledger);
    }

    /** {@link FreezeMode#PRE_DUMP} (default), {@link FreezeMode#DUMP} or {@link FreezeMode#NONE}. */
    public IncrementalDump mode(FreezeMode mode) {
        return new IncrementalDump(pid, freezer, Objects.requireNonNull(mode, "mode"), preDump, parent, sinks,
                digestsDir, budget, chunkSize, verifyFrozen, progressInterval, progress, changeDetection, softDirty, ledger);
    }

    /**
     * A pre-dump (default: CRIU's read-mode pre-dump selection, readable regions) or a full dump (CRIU's
     * full-dump selection, e.g. the last iteration of a migration).
     */
    public IncrementalDump preDump(boolean preDump) {
        return new IncrementalDump(pid, freezer, mode, preDump, parent, sinks, digestsDir, budget, chunkSize,
                verifyFrozen, progressInterval, progress, changeDetection, softDirty, ledger);
    }

    /** The dump this one builds on ({@code null}: none, every page is written). */
    public IncrementalDump parent(ParentDump parent) {
        return new IncrementalDump(pid, freezer, mode, preDump, parent, sinks, digestsDir, budget, chunkSize,
                verifyFrozen, progressInterval, progress, changeDetection, softDirty, ledger);
    }

    public IncrementalDump to(PageSink... sinks) {
        return new IncrementalDump(pid, freezer, mode, preDump, parent, List.of(sinks), digestsDir, budget, chunkSize,
                verifyFrozen, progressInterval, progress, changeDetection, softDirty, ledger);
    }

    /** Where to write {@code pageflux-digests.bin} once the sinks committed: the image directory. */
    public IncrementalDump digestsDir(Path dir) {
        return new IncrementalDump(pid, freezer, mode, preDump, parent, sinks, dir, budget, chunkSize, verifyFrozen,
                progressInterval, progress, changeDetection, softDirty, ledger);
    }

    public IncrementalDump budget(DataSize budget) {
        return new IncrementalDump(pid, freezer, mode, preDump, parent, sinks, digestsDir,
                Objects.requireNonNull(budget, "budget"), chunkSize, verifyFrozen, progressInterval, progress, changeDetection, softDirty, ledger);
    }

    public IncrementalDump chunkSize(DataSize chunkSize) {
        return new IncrementalDump(pid, freezer, mode, preDump, parent, sinks, digestsDir, budget,
                Objects.requireNonNull(chunkSize, "chunkSize"), verifyFrozen, progressInterval, progress, changeDetection, softDirty, ledger);
    }

    /**
     * {@link FreezeMode#DUMP} only: before thawing, compare the written directory ({@link #digestsDir}) and
     * its parent chain with the frozen target's memory ({@link Verifier}); the result is in the report.
     */
    public IncrementalDump verifyFrozen(boolean verify) {
        return new IncrementalDump(pid, freezer, mode, preDump, parent, sinks, digestsDir, budget, chunkSize, verify,
                progressInterval, progress, changeDetection, softDirty, ledger);
    }

    /** Progress ticks, as {@link Dump#progress}. */
    public IncrementalDump progress(Duration interval, Consumer<DumpProgress> listener) {
        return new IncrementalDump(pid, freezer, mode, preDump, parent, sinks, digestsDir, budget, chunkSize,
                verifyFrozen, interval, listener, changeDetection, softDirty, ledger);
    }

    /**
     * How unchanged pages are found ({@link ChangeDetection#AUTO}, the default: soft-dirty bits where the
     * kernel has them, page digests otherwise); decided when the iteration runs, reported in
     * {@link IncrementalReport#changeDetection()}.
     */
    public IncrementalDump changeDetection(ChangeDetection detection) {
        return new IncrementalDump(pid, freezer, mode, preDump, parent, sinks, digestsDir, budget, chunkSize,
                verifyFrozen, progressInterval, progress, Objects.requireNonNull(detection, "detection"), softDirty, ledger);
    }

    /** The kernel's soft-dirty bits (default {@link SoftDirty#kernel()}; tests inject recorded pagemaps). */
    public IncrementalDump softDirtyKernel(SoftDirty.Kernel kernel) {
        return new IncrementalDump(pid, freezer, mode, preDump, parent, sinks, digestsDir, budget, chunkSize,
                verifyFrozen, progressInterval, progress, changeDetection, Objects.requireNonNull(kernel, "kernel"), ledger);
    }

    /** Where the last clear of each process's soft-dirty bits is recorded (default {@link SoftDirtyLedger#system()}). */
    public IncrementalDump softDirtyLedger(SoftDirtyLedger ledger) {
        return new IncrementalDump(pid, freezer, mode, preDump, parent, sinks, digestsDir, budget, chunkSize,
                verifyFrozen, progressInterval, progress, changeDetection, softDirty,
                Objects.requireNonNull(ledger, "ledger"));
    }

    public int pid() {
        return pid;
    }

    public FreezeMode mode() {
        return mode;
    }

    /**
     * Runs the iteration when subscribed (on a bounded-elastic thread: freezing and the final steps block)
     * and emits its report. Pages flow through the {@link Dump} with its backpressure and buffer budget.
     *
     * @throws IllegalStateException at once, without a sink, or for {@link #verifyFrozen} without
     *                               {@link FreezeMode#DUMP} and a {@link #digestsDir}
     * @throws ChangeDetection.SoftDirtyUnsupportedException at once, for {@link ChangeDetection#SOFT_DIRTY} on a
     *                               kernel without soft-dirty bits or with {@link FreezeMode#NONE}
     */
    public Mono<IncrementalReport> run() {
        if (sinks.isEmpty()) {
            throw new IllegalStateException("no sink: call to(...) first");
        }
        if (verifyFrozen && (mode != FreezeMode.DUMP || digestsDir == null)) {
            throw new IllegalStateException("verifying while frozen needs mode DUMP and the image directory"
                    + " (digestsDir): mode=" + mode.cliName() + " digestsDir=" + digestsDir);
        }
        ChangeDetection.Choice choice = choose();
        return Mono.fromCallable(() -> execute(choice)).subscribeOn(Schedulers.boundedElastic());
    }

    private ChangeDetection.Choice choose() {
        PageDigests previous = parent == null ? PageDigests.empty() : parent.digests();
        String parentName = parent == null ? "none" : parent.dir() == null ? "(the previous iteration)"
                : "dir=" + parent.dir();
        return changeDetection.choose(pid, ledger.tracking(softDirty), mode != FreezeMode.NONE, previous, parentName,
                ledger.lastClear(pid));
    }

    private IncrementalReport execute(ChangeDetection.Choice choice) {
        PageChangeDetector detector = choice.detector();
        AtomicLong uptime = new AtomicLong();
        FreezeMode sourceMode = mode == FreezeMode.DUMP ? FreezeMode.NONE : mode; // DUMP: frozen here, around everything
        FreezingSource source = detector.configure(FreezingSource.of(pid, freezer, sourceMode));
        Path parentDir = parent == null ? null : parent.dir();
        List<PageSink> wrapped = new ArrayList<>();
        for (PageSink s : sinks) {
            wrapped.add(new ParentContextSink(s, parentDir, uptime));
        }
        Dump dump = Dump.of(source)
                .regions(preDump ? RegionPolicy.criuPreDump() : RegionPolicy.criuFullDump())
                .preDump(preDump)
                .budget(budget)
                .chunkSize(chunkSize)
                .to(wrapped.toArray(PageSink[]::new));
        // DUMP: the freeze is ours, not the source's; progress adds its running time to the source's
        AtomicReference<FrozenProcess> outerFreeze = new AtomicReference<>();
        if (progress != null) {
            dump = dump.progress(progressInterval, p -> {
                FrozenProcess outer = outerFreeze.get();
                progress.accept(outer == null ? p : p.withFrozen(p.frozen().plus(outer.frozenTime())));
            });
        }

        long started = System.nanoTime();
        FrozenProcess frozen = null;
        if (mode == FreezeMode.DUMP) {
            freezer.prepare();
            frozen = freezer.freeze();
            outerFreeze.set(frozen);
        }
        Optional<String> reason = choice.reason();
        DumpReport report;
        PageDigests digests;
        Optional<Path> digestsFile = Optional.empty();
        Optional<VerifyReport> verify = Optional.empty();
        List<FreezeRecord> freezes = new ArrayList<>();
        try {
            report = dump.run().block();
            digests = detector.digests(pid, uptime.get());
            if (digestsDir != null) {
                try {
                    digestsFile = Optional.of(digests.write(digestsDir));
                } catch (IOException e) {
                    throw new UncheckedIOException("the images are complete but the digests could not be written: file="
                            + digestsDir.resolve(PageDigests.FILE_NAME) + ": " + e.getMessage()
                            + "; the next incremental dump against dir=" + digestsDir + " will write every page", e);
                }
            }
            if (verifyFrozen) {
                verify = Optional.of(Verifier.verifyStill(digestsDir, pid, frozen.kernelWritten()));
            }
            if (detector.clearedSoftDirty()) {
                try {
                    ledger.completed(pid, uptime.get());
                } catch (RuntimeException e) {
                    // the images are complete; only the next iteration loses the bits (it will compare digests)
                    reason = Optional.of(reason.map(r -> r + "; ").orElse("") + e.getMessage()
                            + "; the next iteration will compare page digests");
                }
            }
        } finally {
            if (frozen != null) {
                Duration total = frozen.thaw();
                freezes.add(new FreezeRecord(FreezeMode.DUMP, freezer.describe(), frozen.threads().size(),
                        frozen.freezeLatency(), total, Duration.ofNanos(System.nanoTime() - started), 0));
            }
        }
        freezes.addAll(source.freezes());
        return new IncrementalReport(pid, report, Optional.ofNullable(parent), detector.changedPages(),
                detector.unchangedPages(), detector.hashTime(), freezes, digests, digestsFile, verify,
                Duration.ofNanos(System.nanoTime() - started), new ChangeDetectionReport(detector.method(),
                reason, detector.pagesNotRead(), detector.frozenTime(), detector.clearedSoftDirty()));
    }

    @Override
    public String toString() {
        return "IncrementalDump[pid=" + pid + " mode=" + mode.cliName() + " preDump=" + preDump + " parent="
                + (parent == null ? "none" : parent.dir()) + "]";
    }
}
