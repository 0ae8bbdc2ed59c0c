package io.pageflux.source.freeze;

import io.pageflux.source.ChunkReader;
import io.pageflux.source.ChunkStream;
import io.pageflux.source.DumpStats;
import io.pageflux.source.LiveChunkReader;
import io.pageflux.source.LiveProcess;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.MemorySource;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageScan;
import io.pageflux.source.PlannedRun;
import io.pageflux.source.PooledBuffer;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.ScannerKind;
import io.pageflux.source.Smaps;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.function.Consumer;
import java.util.function.UnaryOperator;
import reactor.core.publisher.Flux;

/**
 * A live process read like {@link LiveProcess}, but stopped by a {@link Freezer} for part of the dump, as
 * {@link FreezeMode} says:
 * <ul>
 *   <li>{@link FreezeMode#PRE_DUMP}: read {@code /proc/PID/smaps}, freeze, confirm the layout with
 *       {@code /proc/PID/maps}, drain the page scan into a compact {@link RunList}, thaw — then read the bytes of those runs while the target runs. The
 *       pause is the scan only (a few milliseconds for hundreds of MiB).</li>
 *   <li>{@link FreezeMode#DUMP}: freeze, scan, read everything, thaw when the reader closes (after the
 *       last chunk, or on cancel or error): a consistent snapshot.</li>
 *   <li>{@link FreezeMode#NONE}: never frozen (same as {@link LiveProcess}).</li>
 * </ul>
 * Every freeze is recorded ({@link #freezes()}, {@link #lastFreeze()}) and reported to the listener set
 * with {@link #onFreeze}, so reports and progress output can state the frozen time.
 *
 * <pre>{@code
 * FreezingSource source = FreezingSource.of(pid, Freezer.ptrace(pid), FreezeMode.PRE_DUMP);
 * Dump.of(source).preDump(true).to(sink).run().block();
 * Duration paused = source.lastFreeze().orElseThrow().frozen();
 * }</pre>
 *
 * <p>Immutable configuration ({@code withX} returns a copy, with a fresh record of freezes); the
 * record of freezes is thread-safe. Each subscription to {@link #pages} freezes once.
 */
public final class FreezingSource implements MemorySource {

    private final int pid;
    private final Freezer freezer;
    private final FreezeMode mode;
    private final ScannerKind scanner;
    private final UnaryOperator<ChunkReader> decorator;
    private final Consumer<FreezeRecord> listener;
    /** Runs on the scanned runs while the target is frozen; {@code null}: none. */
    private final FrozenScanStep step;
    private final List<FreezeRecord> freezes = new ArrayList<>();
    /** Freezes in progress (not yet thawed and recorded), for {@link #frozenSoFar()}; guarded by {@code freezes}. */
    private final List<FrozenProcess> ongoing = new ArrayList<>();

    private FreezingSource(int pid, Freezer freezer, FreezeMode mode, ScannerKind scanner,
                           UnaryOperator<ChunkReader> decorator, Consumer<FreezeRecord> listener, FrozenScanStep step) {
        this.pid = pid;
        this.freezer = freezer;
        this.mode = mode;
        this.scanner = scanner;
        this.decorator = decorator;
        this.listener = listener;
        this.step = step;
    }

    /**
     * Work on the scanned runs that must happen while the target is still frozen (soft-dirty: read the
     * bits, turn clean pages into holes, clear the bits for the next iteration). Runs that come back with
     * {@link io.pageflux.source.PageFlags#PE_PARENT} are holes: their pages are not read.
     */
    @FunctionalInterface
    public interface FrozenScanStep {

        /**
         * @param scanned every run the scan planned, in address order
         * @return the runs to dump, covering the same pages in the same order (holes marked PE_PARENT)
         */
        RunList afterScan(RunList scanned);
    }

    /**
     * @param pid     the target (checked like {@link LiveProcess#attach}: it exists and may be read)
     * @param freezer how to stop it, e.g. {@link Freezer#ptrace(int)}
     * @param mode    for how long
     */
    public static FreezingSource of(int pid, Freezer freezer, FreezeMode mode) {
        LiveProcess.attach(pid);
        return new FreezingSource(pid, Objects.requireNonNull(freezer, "freezer"), Objects.requireNonNull(mode, "mode"),
                ScannerKind.AUTO, UnaryOperator.identity(), r -> { }, null);
    }

    /** A copy that finds present pages with {@code kind}. */
    public FreezingSource withScanner(ScannerKind kind) {
        return new FreezingSource(pid, freezer, mode, Objects.requireNonNull(kind, "kind"), decorator, listener, step);
    }

    /**
     * A copy whose reader is wrapped by {@code decorator} on every subscription, e.g.
     * {@code ChangeDetector::wrap} to turn unchanged pages into PE_PARENT holes. The decorator runs on the
     * read worker, after the thaw in {@link FreezeMode#PRE_DUMP}.
     */
    public FreezingSource withReaderDecorator(UnaryOperator<ChunkReader> decorator) {
        return new FreezingSource(pid, freezer, mode, scanner, Objects.requireNonNull(decorator, "decorator"), listener,
                step);
    }

    /** A copy that calls {@code listener} after each thaw (on the read worker; keep it quick). */
    public FreezingSource onFreeze(Consumer<FreezeRecord> listener) {
        return new FreezingSource(pid, freezer, mode, scanner, decorator, Objects.requireNonNull(listener, "listener"),
                step);
    }

    /**
     * A copy that hands the scanned runs to {@code step} before reading them: in {@link FreezeMode#PRE_DUMP}
     * and {@link FreezeMode#DUMP} while the target is frozen (the scan is then drained into a {@link RunList}
     * first); in {@link FreezeMode#NONE} right after the scan, while it runs (only correct if the caller froze
     * it). Holes the step returns are not read.
     */
    public FreezingSource withFrozenScanStep(FrozenScanStep step) {
        return new FreezingSource(pid, freezer, mode, scanner, decorator, listener, Objects.requireNonNull(step, "step"));
    }

    @Override
    public int pid() {
        return pid;
    }

    public FreezeMode mode() {
        return mode;
    }

    public Freezer freezer() {
        return freezer;
    }

    /** The address space as it is now (not frozen), ascending. */
    @Override
    public List<MemoryRegion> regions() {
        return Smaps.read(pid);
    }

    /**
     * The pages {@code options.policy()} selects, read strictly on demand into buffers of
     * {@code options.pool()}, exactly as {@link LiveProcess#pages} does (same backpressure, ownership and
     * fault handling); the freeze happens at the first demand, on the read worker.
     *
     * <p>Each emitted {@link PageChunk} belongs to the subscriber, which must release it. On cancel or
     * error the target is thawed (DUMP mode: when the reader closes) and the pool gets every buffer back.
     */
    @Override
    public Flux<PageChunk> pages(ReadOptions options) {
        Objects.requireNonNull(options, "options");
        return ChunkStream.from(() -> decorator.apply(open(options)), options.pool(), options.scheduler());
    }

    private ChunkReader open(ReadOptions options) {
        switch (mode) {
            case NONE -> {
                PageScan scan = PageScan.open(pid, Smaps.read(pid), options.policy(), scanner, options.stats());
                if (step != null) {
                    try (scan) {
                        return reader(step.afterScan(RunList.drain(scan)).iterator(), null, options);
                    }
                }
                return reader(scan, scan, options);
            }
            case PRE_DUMP -> {
                Layout running = Layout.read(pid);
                warmUp(running, options);
                FrozenProcess frozen = started(freezer.freeze());
                long t0 = System.nanoTime();
                RunList runs = null;
                try (PageScan scan = PageScan.open(pid, running.whileFrozen(pid), options.policy(), scanner,
                        options.stats())) {
                    runs = RunList.drain(scan);
                    if (step != null) {
                        runs = step.afterScan(runs);
                    }
                } finally {
                    long scanned = System.nanoTime() - t0;
                    Duration total = frozen.thaw();
                    record(frozen, total, Duration.ofNanos(scanned), runs == null ? 0 : runs.size());
                }
                return reader(runs.iterator(), null, options);
            }
            case DUMP -> {
                Layout running = Layout.read(pid);
                warmUp(running, options);
                FrozenProcess frozen = started(freezer.freeze());
                long t0 = System.nanoTime();
                PageScan scan = null;
                try {
                    scan = PageScan.open(pid, running.whileFrozen(pid), options.policy(), scanner, options.stats());
                    ChunkReader reader;
                    if (step != null) {
                        RunList runs = step.afterScan(RunList.drain(scan));
                        scan.close();
                        reader = reader(runs.iterator(), null, options);
                    } else {
                        reader = reader(scan, scan, options);
                    }
                    return new ThawingReader(reader, frozen, t0);
                } catch (RuntimeException | Error e) {
                    if (scan != null) {
                        scan.close();
                    }
                    Duration total = frozen.thaw();
                    record(frozen, total, Duration.ofNanos(System.nanoTime() - t0), 0);
                    throw e;
                }
            }
            default -> throw new IllegalStateException(mode.name());
        }
    }

    /**
     * Runs the scan while the target runs (counted nowhere) and prepares the freezer: in a fresh JVM the
     * first scans pay for class loading, interpretation and compilation, which must not happen while the
     * target is frozen. A few rounds cost a few milliseconds of the target's running time.
     */
    private void warmUp(Layout running, ReadOptions options) {
        freezer.prepare();
        for (int i = 0; i < WARM_UP_SCANS; i++) {
            running.unchanged(pid);
            try (PageScan scan = PageScan.open(pid, running.regions, options.policy(), scanner, new DumpStats())) {
                RunList.drain(scan);
            }
        }
    }

    private static final int WARM_UP_SCANS = 3;

    /**
     * The regions as {@code /proc/PID/smaps} shows them, with the {@code /proc/PID/maps} text of the same
     * layout. smaps costs tens of milliseconds for a large process (the kernel walks every page table to
     * count Rss and Pss), so it is read <em>before</em> the freeze; while frozen only {@code /proc/PID/maps}
     * (no page-table walk) is read and compared byte for byte. Equal text means every VMA has the same
     * bounds, permissions, offset, device, inode and path; the flags the region policies use ({@code io},
     * {@code pf}, {@code ht}) are fixed when a mapping is created, so the decisions are the same. If the
     * text differs, smaps is read again, frozen.
     */
    static final class Layout {
        final List<MemoryRegion> regions;
        final byte[] maps;

        private Layout(List<MemoryRegion> regions, byte[] maps) {
            this.regions = regions;
            this.maps = maps;
        }

        /** smaps, then the maps text, until both describe the same layout (the target may be mapping meanwhile). */
        static Layout read(int pid) {
            for (int attempt = 0; ; attempt++) {
                List<MemoryRegion> regions = Smaps.read(pid);
                byte[] maps = maps(pid);
                if (sameLayout(regions, Smaps.parse(new String(maps, StandardCharsets.ISO_8859_1))) || attempt == 2) {
                    return new Layout(regions, maps);
                }
            }
        }

        /** Whether the layout is still this one (a byte comparison of the maps text). */
        boolean unchanged(int pid) {
            return Arrays.equals(maps, maps(pid));
        }

        List<MemoryRegion> whileFrozen(int pid) {
            return unchanged(pid) ? regions : Smaps.read(pid);
        }

        private static byte[] maps(int pid) {
            Path file = Path.of("/proc", Integer.toString(pid), "maps");
            try {
                return Files.readAllBytes(file);
            } catch (IOException e) {
                throw new ProcessGoneException(pid, "reason=exited file=" + file + " cannot be read: " + e.getMessage(), e);
            }
        }
    }

    static boolean sameLayout(List<MemoryRegion> a, List<MemoryRegion> b) {
        if (a.size() != b.size()) {
            return false;
        }
        for (int i = 0; i < a.size(); i++) {
            MemoryRegion x = a.get(i);
            MemoryRegion y = b.get(i);
            if (x.start() != y.start() || x.end() != y.end() || !x.perms().equals(y.perms()) || x.offset() != y.offset()
                    || !x.device().equals(y.device()) || x.inode() != y.inode() || !x.path().equals(y.path())) {
                return false;
            }
        }
        return true;
    }

    private ChunkReader reader(Iterator<PlannedRun> runs, PageScan scan,
                               ReadOptions options) {
        try {
            if (step != null) {
                return new HoleSkippingReader(runs, it -> LiveChunkReader.of(it, pid, options), options.stats());
            }
            return LiveChunkReader.of(runs, pid, options);
        } catch (RuntimeException | Error e) {
            if (scan != null) {
                scan.close();
            }
            throw e;
        }
    }

    private FrozenProcess started(FrozenProcess frozen) {
        synchronized (freezes) {
            ongoing.add(frozen);
        }
        return frozen;
    }

    private void record(FrozenProcess frozen, Duration total, Duration scan, long runs) {
        FreezeRecord r = new FreezeRecord(mode, freezer.describe(), frozen.threads().size(), frozen.freezeLatency(),
                total, scan, runs);
        synchronized (freezes) {
            ongoing.remove(frozen);
            freezes.add(r);
        }
        listener.accept(r);
    }

    /** Every freeze so far, oldest first. */
    public List<FreezeRecord> freezes() {
        synchronized (freezes) {
            return List.copyOf(freezes);
        }
    }

    /** The most recent freeze, once its thaw happened. */
    public Optional<FreezeRecord> lastFreeze() {
        synchronized (freezes) {
            return freezes.isEmpty() ? Optional.empty() : Optional.of(freezes.get(freezes.size() - 1));
        }
    }

    /**
     * How long the target has been stopped so far: every recorded freeze plus the one in progress, if
     * any (a {@link FreezeMode#DUMP} read). For progress output while a dump runs.
     */
    public Duration frozenSoFar() {
        synchronized (freezes) {
            Duration sum = Duration.ZERO;
            for (FreezeRecord r : freezes) {
                sum = sum.plus(r.frozen());
            }
            for (FrozenProcess f : ongoing) {
                sum = sum.plus(f.frozenTime());
            }
            return sum;
        }
    }

    /** Total time the target was stopped over all recorded (thawed) freezes. */
    public Duration totalFrozen() {
        Duration sum = Duration.ZERO;
        for (FreezeRecord r : freezes()) {
            sum = sum.plus(r.frozen());
        }
        return sum;
    }

    @Override
    public String toString() {
        return "FreezingSource[pid=" + pid + " mode=" + mode.cliName() + " freezer=" + freezer.describe() + "]";
    }

    /**
     * DUMP mode: thaws as soon as the reader has nothing left (before the stream completes, so a
     * subscriber that sees completion sees a running target), or when the stream closes the reader on
     * cancel or error.
     */
    private final class ThawingReader implements ChunkReader {
        private final ChunkReader reader;
        private final FrozenProcess frozen;
        private final long scanStart;

        ThawingReader(ChunkReader reader, FrozenProcess frozen, long scanStart) {
            this.reader = reader;
            this.frozen = frozen;
            this.scanStart = scanStart;
        }

        @Override
        public PageChunk next(PooledBuffer buffer) throws Exception {
            PageChunk chunk = reader.next(buffer);
            if (chunk == null) {
                thaw();
            }
            return chunk;
        }

        @Override
        public boolean exhausted() {
            boolean done = reader.exhausted();
            if (done) {
                thaw();
            }
            return done;
        }

        @Override
        public Duration cost(PageChunk chunk) {
            return reader.cost(chunk);
        }

        @Override
        public void close() {
            try {
                reader.close();
            } finally {
                thaw();
            }
        }

        private void thaw() {
            if (frozen.isFrozen()) {
                long read = System.nanoTime() - scanStart;
                Duration total = frozen.thaw();
                record(frozen, total, Duration.ofNanos(read), 0);
            }
        }
    }
}
