package io.pageflux.source.testing;

import io.pageflux.source.ChunkStream;
import io.pageflux.source.DataSize;
import io.pageflux.source.DumpStats;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.MemorySource;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageRun;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.ReadOptions;
import io.pageflux.source.RegionDecision;
import io.pageflux.source.RegionPolicy;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.NavigableMap;
import java.util.Objects;
import java.util.OptionalLong;
import java.util.TreeMap;
import reactor.core.publisher.Flux;

/**
 * A process that exists only in memory descriptions: seeded, deterministic regions of any size
 * (terabytes, sparse or dense), deterministic page contents, a read cost that elapses on the
 * Reactor scheduler of the {@link ReadOptions} (virtual time in tests), and faults on demand.
 * Use it to test a dump pipeline's memory behaviour, pacing and error handling without a target.
 *
 * <pre>{@code
 * SimulatedProcess process = SimulatedProcess.builder()
 *         .seed(42)
 *         .region(0x7f0000000000L, DataSize.ofGibibytes(64), 1.0)      // 64 GiB, every page present
 *         .region(SimulatedRegion.anonymous(0x7e0000000000L, DataSize.ofTebibytes(1)).withDensity(0.001))
 *         .fillPages(false)                                           // bytes unspecified: fast
 *         .readRate(DataSize.ofGibibytes(2))                          // 2 GiB per (virtual) second
 *         .build();
 * }</pre>
 *
 * <p><b>Contents.</b> With {@link Builder#fillPages(boolean) fillPages(true)} (the default) every
 * 8-byte word at address {@code a} holds {@link #word(long, long) word(seed, a)} in little-endian
 * order, so a consumer can check every byte it got ({@link #contentMatches(PageChunk)}). With
 * {@code false} the buffers are not written at all and a 64 GiB dump runs in seconds.
 *
 * <p><b>Selection.</b> {@link #pages(ReadOptions)} applies {@code options.policy()} to the regions
 * as smaps would show them (CRIU's {@link io.pageflux.source.RegionPolicy#criuFullDump()} by
 * default). {@code ALL} selects every page of a region; both "present" selections select the
 * present pages (a simulated file page always counts as copied on write).
 *
 * <p><b>Faults.</b> {@link Builder#vanish(long, long) Vanished pages} are planned but cannot be read:
 * they are left out of the chunks and counted in {@link DumpStats#pagesVanished()}, as a live
 * read does for pages unmapped during the dump. {@link Builder#exitAt(Duration)} and
 * {@link Builder#exitAfter(DataSize)} make a read fail with {@link ProcessGoneException};
 * {@link Builder#readErrorAt(long)} makes the read covering that address fail with an
 * {@link InjectedFaultException} naming the pid and address.
 */
public final class SimulatedProcess implements MemorySource {

    private final int pid;
    private final long seed;
    private final long seedKey;
    private final List<SimulatedRegion> regions;
    private final boolean fillPages;
    private final long costNanos;
    private final long costPerBytes;
    private final NavigableMap<Long, Long> vanished;
    private final Duration exitAt;
    private final long exitAfterBytes;
    private final OptionalLong readErrorAt;
    private volatile List<MemoryRegion> memoryRegions;

    private SimulatedProcess(Builder b) {
        this.pid = b.pid;
        this.seed = b.seed;
        this.seedKey = PagePresence.mix(b.seed);
        this.regions = List.copyOf(b.regions);
        this.fillPages = b.fillPages;
        this.costNanos = b.costNanos;
        this.costPerBytes = b.costPerBytes;
        this.vanished = new TreeMap<>(b.vanished);
        this.exitAt = b.exitAt;
        this.exitAfterBytes = b.exitAfterBytes;
        this.readErrorAt = b.readErrorAt;
    }

    public static Builder builder() {
        return new Builder();
    }

    /**
     * A policy that dumps the present pages of every region, whatever its permissions or backing,
     * read with {@code process_vm_readv} and not lazy: handy when a test is about the stream, not
     * about CRIU's selection rules.
     */
    public static RegionPolicy dumpEveryRegion() {
        return region -> RegionDecision.dump("simulated: every region", RegionDecision.ReadVia.PROCESS_VM_READV,
                RegionDecision.PageSelection.PRESENT_NOT_ZERO, false);
    }

    /**
     * The content pattern: the little-endian 64-bit word at 8-byte aligned {@code address} is
     * {@code splitmix64(address ^ splitmix64(seed))}, where {@code splitmix64} is the finalizer
     * of the SplitMix64 generator (shifts 30, 27, 31; multipliers {@code 0xBF58476D1CE4E5B9},
     * {@code 0x94D049BB133111EB}).
     */
    public static long word(long seed, long address) {
        return PagePresence.mix(address ^ PagePresence.mix(seed));
    }

    @Override
    public int pid() {
        return pid;
    }

    public long seed() {
        return seed;
    }

    /** Whether chunks carry the {@link #word(long, long)} pattern (else their bytes are unspecified). */
    public boolean fillsPages() {
        return fillPages;
    }

    /** The regions as configured, in address order. */
    public List<SimulatedRegion> simulatedRegions() {
        return regions;
    }

    /**
     * The regions as smaps would show them ({@code Rss} = present pages). The first call walks
     * each region's presence blocks once (milliseconds for terabytes); the result is cached.
     */
    @Override
    public List<MemoryRegion> regions() {
        List<MemoryRegion> out = memoryRegions;
        if (out == null) {
            List<MemoryRegion> list = new ArrayList<>(regions.size());
            for (SimulatedRegion r : regions) {
                list.add(r.toMemoryRegion(r.presence(seed).presentPages()));
            }
            out = List.copyOf(list);
            memoryRegions = out;
        }
        return out;
    }

    /** Present pages of {@code region} for this seed (what a dump selecting present pages plans). */
    public long presentPages(SimulatedRegion region) {
        return region.presence(seed).presentPages();
    }

    /** The word a filled chunk holds at 8-byte aligned {@code address}: {@code word(seed(), address)}. */
    public long expectedWord(long address) {
        return PagePresence.mix(address ^ seedKey);
    }

    /**
     * Whether every byte of {@code chunk} is what this process holds at the addresses its runs
     * name. Only meaningful when {@link #fillsPages()}.
     */
    public boolean contentMatches(PageChunk chunk) {
        ByteBuffer data = chunk.data().order(ByteOrder.LITTLE_ENDIAN);
        int pos = 0;
        for (PageRun run : chunk.runs()) {
            for (long a = run.address(), end = run.end(); a < end; a += Long.BYTES, pos += Long.BYTES) {
                if (data.getLong(pos) != expectedWord(a)) {
                    return false;
                }
            }
        }
        return pos == chunk.bytes();
    }

    /**
     * The present pages of the regions {@code options.policy()} selects, in address order, read
     * into buffers of {@code options.pool()} <b>only on demand</b> (see {@link ChunkStream}): no
     * chunk is produced before downstream requested it and a buffer is free, so at most the
     * pool's capacity is leased. Each chunk takes the read cost ({@link Builder#readRate}) on
     * {@code options.scheduler()} before it is emitted. Each emitted chunk belongs to the
     * subscriber, which must {@link PageChunk#release()} it; cancel and errors release the chunk
     * in flight. Regions, runs, chunks and vanished pages are counted in {@code options.stats()}.
     * A region the policy says to {@code FAIL} fails the stream before anything is read.
     */
    @Override
    public Flux<PageChunk> pages(ReadOptions options) {
        Objects.requireNonNull(options, "options");
        return ChunkStream.from(() -> new SimulatedReader(this, options), options.pool(), options.scheduler());
    }

    // ---- what the reader needs ------------------------------------------------------------

    boolean fillPagesEnabled() {
        return fillPages;
    }

    /** Simulated time to read {@code bytes}, in nanoseconds. */
    long costNanos(long bytes) {
        if (costNanos == 0) {
            return 0;
        }
        try {
            return Math.multiplyExact(bytes, costNanos) / costPerBytes;
        } catch (ArithmeticException overflow) {
            return java.math.BigInteger.valueOf(bytes).multiply(java.math.BigInteger.valueOf(costNanos))
                    .divide(java.math.BigInteger.valueOf(costPerBytes)).longValueExact();
        }
    }

    NavigableMap<Long, Long> vanishedRanges() {
        return vanished;
    }

    Duration exitAt() {
        return exitAt;
    }

    long exitAfterBytes() {
        return exitAfterBytes;
    }

    OptionalLong readErrorAt() {
        return readErrorAt;
    }

    @Override
    public String toString() {
        return "SimulatedProcess[pid=" + pid + " seed=" + seed + " regions=" + regions.size() + "]";
    }

    /** Configures a {@link SimulatedProcess}. Not thread-safe; {@link #build()} copies everything. */
    public static final class Builder {
        private int pid = 4242;
        private long seed = 1;
        private final List<SimulatedRegion> regions = new ArrayList<>();
        private boolean fillPages = true;
        private long costNanos;
        private long costPerBytes = 1;
        private final TreeMap<Long, Long> vanished = new TreeMap<>();
        private Duration exitAt;
        private long exitAfterBytes = -1;
        private OptionalLong readErrorAt = OptionalLong.empty();

        private Builder() {
        }

        /** The pid errors and pagemaps name (default 4242). */
        public Builder pid(int pid) {
            if (pid <= 0) {
                throw new IllegalArgumentException("pid must be positive: pid=" + pid);
            }
            this.pid = pid;
            return this;
        }

        /** Decides which pages are present and what they hold (default 1). */
        public Builder seed(long seed) {
            this.seed = seed;
            return this;
        }

        /** Adds private anonymous memory ({@code rw-p}) with {@code density} of its pages present. */
        public Builder region(long start, DataSize size, double density) {
            return region(SimulatedRegion.anonymous(start, size).withDensity(density));
        }

        public Builder region(SimulatedRegion region) {
            regions.add(Objects.requireNonNull(region, "region"));
            return this;
        }

        /**
         * Whether to write the {@link SimulatedProcess#word(long, long)} pattern into every chunk
         * (default {@code true}). Turn it off for huge simulations: the chunks' bytes are then
         * whatever the pooled buffer held, and a 64 GiB dump takes seconds of real time.
         */
        public Builder fillPages(boolean fillPages) {
            this.fillPages = fillPages;
            return this;
        }

        /** Reading costs {@code perSecond} bytes per second of scheduler time (default: free). */
        public Builder readRate(DataSize perSecond) {
            if (perSecond.bytes() <= 0) {
                throw new IllegalArgumentException("read rate must be positive: readRate=" + perSecond);
            }
            this.costNanos = 1_000_000_000L;
            this.costPerBytes = perSecond.bytes();
            return this;
        }

        /** Reading one MiB costs {@code perMiB} of scheduler time (default: free). */
        public Builder readCostPerMiB(Duration perMiB) {
            if (perMiB.isNegative()) {
                throw new IllegalArgumentException("read cost must not be negative: perMiB=" + perMiB);
            }
            this.costNanos = perMiB.toNanos();
            this.costPerBytes = 1L << 20;
            return this;
        }

        /**
         * {@code pages} pages from {@code address} vanish between scan and read (as if unmapped
         * meanwhile): they are planned, then skipped and counted in {@link DumpStats#pagesVanished()}.
         */
        public Builder vanish(long address, long pages) {
            if (address % PageRun.PAGE_SIZE != 0 || pages <= 0) {
                throw new IllegalArgumentException(String.format(
                        "vanish needs a page-aligned address and pages > 0: address=0x%x pages=%d", address, pages));
            }
            long end = address + pages * PageRun.PAGE_SIZE;
            // merge with overlapping or touching ranges so lookups see one range per stretch
            Map.Entry<Long, Long> before = vanished.floorEntry(address);
            if (before != null && before.getValue() >= address) {
                address = before.getKey();
                end = Math.max(end, before.getValue());
            }
            Map.Entry<Long, Long> after;
            while ((after = vanished.ceilingEntry(address)) != null && after.getKey() <= end) {
                end = Math.max(end, after.getValue());
                vanished.remove(after.getKey());
            }
            vanished.put(address, end);
            return this;
        }

        /**
         * The process exits {@code after} the stream started reading (on the read scheduler's clock):
         * the first read at or after that time fails with {@link ProcessGoneException}.
         */
        public Builder exitAt(Duration after) {
            if (after.isNegative()) {
                throw new IllegalArgumentException("exit time must not be negative: exitAt=" + after);
            }
            this.exitAt = after;
            return this;
        }

        /**
         * The process exits once {@code bytes} have been read: the first read that starts with at
         * least that much delivered fails with {@link ProcessGoneException}.
         */
        public Builder exitAfter(DataSize bytes) {
            this.exitAfterBytes = bytes.bytes();
            return this;
        }

        /**
         * The read whose pages cover {@code address} fails with an {@link InjectedFaultException}
         * naming the pid and address (like an {@code EIO} from the kernel). An address that is
         * not a selected, present page is never read and so never fails.
         */
        public Builder readErrorAt(long address) {
            this.readErrorAt = OptionalLong.of(address);
            return this;
        }

        /**
         * @throws IllegalArgumentException if there is no region or two regions overlap
         */
        public SimulatedProcess build() {
            if (regions.isEmpty()) {
                throw new IllegalArgumentException("a simulated process needs at least one region: pid=" + pid);
            }
            regions.sort(Comparator.comparingLong(SimulatedRegion::start));
            for (int i = 1; i < regions.size(); i++) {
                SimulatedRegion prev = regions.get(i - 1);
                SimulatedRegion next = regions.get(i);
                if (next.start() < prev.end()) {
                    throw new IllegalArgumentException(String.format(
                            "regions overlap: pid=%d 0x%x-0x%x and 0x%x-0x%x; give each region its own addresses",
                            pid, prev.start(), prev.end(), next.start(), next.end()));
                }
            }
            return new SimulatedProcess(this);
        }
    }
}
