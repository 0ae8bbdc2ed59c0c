package io.pageflux.source.incremental;

import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.zip.CRC32C;

/**
 * One 64-bit content digest ({@link XxHash64}, seed 0) per page of a dump, grouped by pagemap: what the
 * next iteration of an incremental dump compares the pages it reads against. Pages whose digest is
 * unchanged become PE_PARENT holes.
 *
 * <p><b>Compact.</b> Per pagemap the pages are stored as runs of consecutive addresses
 * ({@code start, pages}: 16 bytes per run) plus one {@code long} per page: a 512 MiB process of
 * 131072 pages in a few runs costs about 1 MiB. Lookups are a binary search over the runs, or O(1)
 * for ascending addresses through a {@link Cursor}.
 *
 * <p><b>File</b> {@value #FILE_NAME}, next to the images of the dump it describes; little-endian:
 * <pre>
 *  offset size  field
 *   0     8     magic "PFDIGEST"  (50 46 44 49 47 45 53 54)
 *   8     4     version = 1
 *  12     4     page size = 4096
 *  16     4     hash algorithm = 1 (XXH64, seed 0, over the page's 4096 bytes)
 *  20     4     pid the dump is of
 *  24     8     dump_uptime of the dump, microseconds (= its inventory.img dump_uptime)
 *  32     4     pagemap count N
 *  36     4     flags: bit 0 = soft-dirty bits cleared ({@code clear_refs 4}) while the target was frozen for
 *               this dump, after its scan (see {@link #softDirtyCleared()}); other bits 0
 *  then N pagemaps, each:
 *   +0    4     kind: 1 task (pagemap-ID.img), 2 shared anonymous (pagemap-shmem-ID.img)
 *   +4    4     reserved = 0
 *   +8    8     id (pid or shmid)
 *   +16   8     run count R
 *   +24   8     page count P
 *   +32   16*R  runs: u64 first page's vaddr (as in the pagemap), u64 pages; ascending, not touching
 *   ...   8*P   digests, in address order
 *  last   8     CRC32C of every byte before it (zero-extended to 64 bits)
 * </pre>
 * A file whose pid or dump_uptime differ from the dump's, or that is damaged, must not be used: the
 * caller then dumps every page (no holes), which is always correct.
 */
public final class PageDigests {

    public static final String FILE_NAME = "pageflux-digests.bin";
    static final long MAGIC = ByteBuffer.wrap("PFDIGEST".getBytes(java.nio.charset.StandardCharsets.US_ASCII))
            .order(ByteOrder.LITTLE_ENDIAN).getLong();
    static final int VERSION = 1;
    static final int ALGORITHM_XXH64 = 1;
    static final int HEADER_BYTES = 40;
    static final int TABLE_HEADER_BYTES = 32;

    private static final int PAGE = PageRun.PAGE_SIZE;
    static final int FLAG_SOFT_DIRTY_CLEARED = 1;

    private static final PageDigests EMPTY = new PageDigests(0, 0, Map.of(), false);

    private final int pid;
    private final long dumpUptimeMicros;
    private final Map<PagemapId, Table> tables;
    private final boolean softDirtyCleared;

    private PageDigests(int pid, long dumpUptimeMicros, Map<PagemapId, Table> tables, boolean softDirtyCleared) {
        this.pid = pid;
        this.dumpUptimeMicros = dumpUptimeMicros;
        this.tables = tables;
        this.softDirtyCleared = softDirtyCleared;
    }

    /** No digests: every page compares as changed (a first dump, or no usable parent). */
    public static PageDigests empty() {
        return EMPTY;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** The pid of the dump these digests describe (0 when unknown). */
    public int pid() {
        return pid;
    }

    /** The {@code dump_uptime} of the dump these digests describe (0 when unknown). */
    public long dumpUptimeMicros() {
        return dumpUptimeMicros;
    }

    /** The same digests labelled as describing the dump of {@code pid} taken at {@code dumpUptimeMicros}. */
    public PageDigests forDump(int pid, long dumpUptimeMicros) {
        return new PageDigests(pid, dumpUptimeMicros, tables, softDirtyCleared);
    }

    /**
     * Whether the soft-dirty bits of the target were cleared while it was frozen for the dump these digests
     * describe (after its scan). Only then does a clear bit in the next iteration mean "unchanged since this
     * dump"; without it the next iteration must compare digests.
     */
    public boolean softDirtyCleared() {
        return softDirtyCleared;
    }

    /** The same digests, with {@link #softDirtyCleared()} set as given. */
    public PageDigests withSoftDirtyCleared(boolean cleared) {
        return new PageDigests(pid, dumpUptimeMicros, tables, cleared);
    }

    /** The pagemaps that have digests, in the order they were first seen. */
    public List<PagemapId> pagemaps() {
        return List.copyOf(tables.keySet());
    }

    /** Pages with a digest, over all pagemaps. */
    public long pages() {
        long n = 0;
        for (Table t : tables.values()) {
            n += t.digests.length;
        }
        return n;
    }

    /** Pages with a digest in one pagemap. */
    public long pages(PagemapId pagemap) {
        Table t = tables.get(pagemap);
        return t == null ? 0 : t.digests.length;
    }

    /** Runs of consecutive pages over all pagemaps (the compact form's overhead). */
    public long runs() {
        long n = 0;
        for (Table t : tables.values()) {
            n += t.starts.length;
        }
        return n;
    }

    /** Bytes these digests take in memory, about. */
    public long memoryBytes() {
        return runs() * 20 + pages() * 8;
    }

    /** Whether the page at {@code vaddr} of {@code pagemap} has a digest. */
    public boolean contains(PagemapId pagemap, long vaddr) {
        Table t = tables.get(pagemap);
        return t != null && t.indexOf(vaddr, -1) >= 0;
    }

    /**
     * The digest of the page at {@code vaddr} (the pagemap's address: an offset for shared anonymous
     * memory).
     *
     * @throws IllegalArgumentException if there is none ({@link #contains} says so)
     */
    public long digest(PagemapId pagemap, long vaddr) {
        Table t = tables.get(pagemap);
        int i = t == null ? -1 : t.indexOf(vaddr, -1);
        if (i < 0) {
            throw new IllegalArgumentException(String.format("no digest for pagemap=%s vaddr=0x%x", pagemap, vaddr));
        }
        return t.digests[i];
    }

    /**
     * Appends to {@code into} the runs of pages of {@code pagemap} that have a digest, clipped to
     * {@code [from, to)} (pagemap addresses): a binary search, then one step per run — no per-page work, so
     * that the soft-dirty path can intersect them with the dirty ranges while the target is frozen.
     */
    void runsIn(PagemapId pagemap, long from, long to, PageRanges into) {
        Table t = tables.get(pagemap);
        if (t == null) {
            return;
        }
        // the first run that ends after from
        int lo = 0;
        int hi = t.starts.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (t.starts[mid] + t.counts[mid] * PAGE <= from) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for (int r = lo; r < t.starts.length && t.starts[r] < to; r++) {
            into.add(Math.max(t.starts[r], from), Math.min(t.starts[r] + t.counts[r] * PAGE, to));
        }
    }

    /** A reader for ascending lookups in one pagemap; O(1) per page while addresses ascend. */
    public Cursor cursor(PagemapId pagemap) {
        return new Cursor(tables.get(pagemap));
    }

    /** Ascending lookups in one pagemap. Not thread-safe. */
    public static final class Cursor {
        private final Table table;
        private int run = -1;
        private long digest;

        private Cursor(Table table) {
            this.table = table;
        }

        /** Whether the page at {@code vaddr} has a digest; if so {@link #digest()} returns it. */
        public boolean find(long vaddr) {
            if (table == null) {
                return false;
            }
            int i = table.indexOf(vaddr, run);
            if (i < 0) {
                return false;
            }
            run = table.lastRun;
            digest = table.digests[i];
            return true;
        }

        /** The digest found by the last successful {@link #find}. */
        public long digest() {
            return digest;
        }
    }

    /** One pagemap's pages: runs of consecutive addresses and one digest per page. */
    private static final class Table {
        final long[] starts;
        final long[] counts;
        /** Index into {@link #digests} of each run's first page. */
        final int[] firsts;
        final long[] digests;
        int lastRun;

        Table(long[] starts, long[] counts, long[] digests) {
            this.starts = starts;
            this.counts = counts;
            this.digests = digests;
            this.firsts = new int[starts.length];
            long at = 0;
            for (int i = 0; i < starts.length; i++) {
                firsts[i] = Math.toIntExact(at);
                at += counts[i];
            }
            if (at != digests.length) {
                throw new IllegalArgumentException("runs hold " + at + " pages but there are " + digests.length
                        + " digests");
            }
        }

        /** The digest index of {@code vaddr}, or -1; {@code hint} is a run to try first (and the next one). */
        int indexOf(long vaddr, int hint) {
            if (hint >= 0) {
                for (int r = hint; r < Math.min(hint + 2, starts.length); r++) {
                    int i = inRun(r, vaddr);
                    if (i >= 0) {
                        lastRun = r;
                        return i;
                    }
                }
            }
            int lo = 0;
            int hi = starts.length - 1;
            while (lo <= hi) {
                int mid = (lo + hi) >>> 1;
                if (Long.compareUnsigned(starts[mid], vaddr) <= 0) {
                    lo = mid + 1;
                } else {
                    hi = mid - 1;
                }
            }
            if (hi < 0) {
                return -1;
            }
            int i = inRun(hi, vaddr);
            if (i >= 0) {
                lastRun = hi;
            }
            return i;
        }

        private int inRun(int r, long vaddr) {
            long delta = vaddr - starts[r];
            if (delta < 0 || delta % PAGE != 0 || delta / PAGE >= counts[r]) {
                return -1;
            }
            return firsts[r] + (int) (delta / PAGE);
        }
    }

    /**
     * Collects digests page by page, in any order (ascending is cheapest); a page added twice keeps
     * the last digest. Not thread-safe: feed it from one stream.
     */
    public static final class Builder {
        private final Map<PagemapId, Growing> tables = new LinkedHashMap<>();
        private Growing last;
        private PagemapId lastId;

        private Builder() {
        }

        public Builder add(PagemapId pagemap, long vaddr, long digest) {
            if (vaddr % PAGE != 0) {
                throw new IllegalArgumentException(String.format("vaddr=0x%x is not page aligned", vaddr));
            }
            if (!pagemap.equals(lastId)) {
                lastId = pagemap;
                last = tables.computeIfAbsent(pagemap, id -> new Growing());
            }
            last.add(vaddr, digest);
            return this;
        }

        /** The digests added so far, labelled with the dump they describe. */
        public PageDigests build(int pid, long dumpUptimeMicros) {
            Map<PagemapId, Table> built = new LinkedHashMap<>();
            tables.forEach((id, g) -> built.put(id, g.toTable()));
            return new PageDigests(pid, dumpUptimeMicros, Collections.unmodifiableMap(built), false);
        }
    }

    private static final class Growing {
        long[] vaddrs = new long[1024];
        long[] digests = new long[1024];
        int size;
        boolean ascending = true;

        void add(long vaddr, long digest) {
            if (size > 0 && Long.compareUnsigned(vaddr, vaddrs[size - 1]) <= 0) {
                ascending = false;
            }
            if (size == vaddrs.length) {
                vaddrs = Arrays.copyOf(vaddrs, size * 2);
                digests = Arrays.copyOf(digests, size * 2);
            }
            vaddrs[size] = vaddr;
            digests[size] = digest;
            size++;
        }

        Table toTable() {
            long[] v = Arrays.copyOf(vaddrs, size);
            long[] d = Arrays.copyOf(digests, size);
            if (!ascending) {
                // rare (a shared object mapped twice): sort by address, the last digest of a page wins
                Integer[] order = new Integer[size];
                for (int i = 0; i < size; i++) {
                    order[i] = i;
                }
                Arrays.sort(order, Comparator.<Integer>comparingLong(i -> v[i] ^ Long.MIN_VALUE)
                        .thenComparingInt(i -> i));
                long[] sv = new long[size];
                long[] sd = new long[size];
                int n = 0;
                for (int k = 0; k < size; k++) {
                    int i = order[k];
                    if (n > 0 && sv[n - 1] == v[i]) {
                        sd[n - 1] = d[i];
                    } else {
                        sv[n] = v[i];
                        sd[n] = d[i];
                        n++;
                    }
                }
                return runs(Arrays.copyOf(sv, n), Arrays.copyOf(sd, n));
            }
            return runs(v, d);
        }

        private static Table runs(long[] v, long[] d) {
            List<long[]> runs = new ArrayList<>();
            for (int i = 0; i < v.length; i++) {
                if (!runs.isEmpty()) {
                    long[] r = runs.get(runs.size() - 1);
                    if (r[0] + r[1] * PAGE == v[i]) {
                        r[1]++;
                        continue;
                    }
                }
                runs.add(new long[] {v[i], 1});
            }
            long[] starts = new long[runs.size()];
            long[] counts = new long[runs.size()];
            for (int i = 0; i < runs.size(); i++) {
                starts[i] = runs.get(i)[0];
                counts[i] = runs.get(i)[1];
            }
            return new Table(starts, counts, d);
        }
    }

    // ---------------------------------------------------------------- file

    /**
     * Writes {@value #FILE_NAME} into {@code dir} atomically (a temporary file renamed into place).
     *
     * @return the file written
     */
    public Path write(Path dir) throws IOException {
        Path file = dir.resolve(FILE_NAME);
        Path tmp = dir.resolve("." + FILE_NAME + ".tmp-" + ProcessHandle.current().pid());
        long hash;
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE)) {
            HashingWriter w = new HashingWriter(ch);
            w.putLong(MAGIC).putInt(VERSION).putInt(PAGE).putInt(ALGORITHM_XXH64).putInt(pid)
                    .putLong(dumpUptimeMicros).putInt(tables.size()).putInt(softDirtyCleared ? FLAG_SOFT_DIRTY_CLEARED : 0);
            for (Map.Entry<PagemapId, Table> e : tables.entrySet()) {
                Table t = e.getValue();
                w.putInt(e.getKey().kind().wireType()).putInt(0).putLong(e.getKey().id())
                        .putLong(t.starts.length).putLong(t.digests.length);
                for (int i = 0; i < t.starts.length; i++) {
                    w.putLong(t.starts[i]).putLong(t.counts[i]);
                }
                for (long digest : t.digests) {
                    w.putLong(digest);
                }
            }
            hash = w.finish();
            ByteBuffer trailer = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, hash);
            while (trailer.hasRemaining()) {
                ch.write(trailer);
            }
            ch.force(true);
        } catch (IOException | RuntimeException e) {
            Files.deleteIfExists(tmp);
            throw e;
        }
        try {
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING);
        }
        return file;
    }

    /**
     * Reads {@value #FILE_NAME} from {@code dir}.
     *
     * @throws NoSuchFileException   if the dump has none (made by CRIU, or by pageflux without digests)
     * @throws DigestFileException   if it is damaged or of another format; the message names file, offset
     *                               and field
     */
    public static PageDigests read(Path dir) throws IOException {
        Path file = dir.resolve(FILE_NAME);
        byte[] bytes = Files.readAllBytes(file);
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        if (bytes.length < HEADER_BYTES + 8) {
            throw new DigestFileException(file, 0, "length", "file is " + bytes.length + " bytes, shorter than a header");
        }
        long stored = b.getLong(bytes.length - 8);
        CRC32C crc = new CRC32C();
        crc.update(bytes, 0, bytes.length - 8);
        long actual = crc.getValue();
        if (stored != actual) {
            throw new DigestFileException(file, bytes.length - 8, "checksum", String.format(
                    "stored 0x%016x != computed 0x%016x: the file is damaged", stored, actual));
        }
        if (b.getLong(0) != MAGIC) {
            throw new DigestFileException(file, 0, "magic", String.format("0x%016x is not \"PFDIGEST\"", b.getLong(0)));
        }
        expect(file, b, 8, "version", VERSION);
        expect(file, b, 12, "page_size", PAGE);
        expect(file, b, 16, "algorithm", ALGORITHM_XXH64);
        int pid = b.getInt(20);
        long uptime = b.getLong(24);
        int count = b.getInt(32);
        int flags = b.getInt(36);
        if ((flags & ~FLAG_SOFT_DIRTY_CLEARED) != 0) {
            throw new DigestFileException(file, 36, "flags", String.format("0x%x has unknown bits (written by a newer"
                    + " version of pageflux?)", flags));
        }
        int at = HEADER_BYTES;
        Map<PagemapId, Table> tables = new LinkedHashMap<>();
        for (int n = 0; n < count; n++) {
            if (at + TABLE_HEADER_BYTES > bytes.length - 8) {
                throw new DigestFileException(file, at, "pagemap[" + n + "]", "truncated table header");
            }
            int kind = b.getInt(at);
            PagemapId id = switch (kind) {
                case 1 -> PagemapId.task(b.getLong(at + 8));
                case 2 -> PagemapId.shmem(b.getLong(at + 8));
                default -> throw new DigestFileException(file, at, "pagemap[" + n + "].kind", "unknown kind " + kind);
            };
            long runs = b.getLong(at + 16);
            long pages = b.getLong(at + 24);
            long need = runs * 16 + pages * 8;
            if (runs < 0 || pages < 0 || runs > Integer.MAX_VALUE || pages > Integer.MAX_VALUE
                    || at + TABLE_HEADER_BYTES + need > bytes.length - 8) {
                throw new DigestFileException(file, at + 16, "pagemap[" + n + "].runs/pages", "runs=" + runs
                        + " pages=" + pages + " do not fit in the file");
            }
            at += TABLE_HEADER_BYTES;
            long[] starts = new long[(int) runs];
            long[] counts = new long[(int) runs];
            long sum = 0;
            for (int r = 0; r < runs; r++) {
                starts[r] = b.getLong(at);
                counts[r] = b.getLong(at + 8);
                if (counts[r] <= 0 || starts[r] % PAGE != 0
                        || (r > 0 && Long.compareUnsigned(starts[r], starts[r - 1] + counts[r - 1] * PAGE) < 0)) {
                    throw new DigestFileException(file, at, "pagemap[" + n + "].run[" + r + "]", String.format(
                            "start=0x%x pages=%d is unaligned, empty or out of order", starts[r], counts[r]));
                }
                sum += counts[r];
                at += 16;
            }
            if (sum != pages) {
                throw new DigestFileException(file, at, "pagemap[" + n + "].pages", "runs hold " + sum
                        + " pages but the header says " + pages);
            }
            long[] digests = new long[(int) pages];
            b.position(at);
            b.asLongBuffer().get(digests);
            at += (int) pages * 8;
            tables.put(id, new Table(starts, counts, digests));
        }
        if (at != bytes.length - 8) {
            throw new DigestFileException(file, at, "end", (bytes.length - 8 - at) + " unexpected bytes before the checksum");
        }
        return new PageDigests(pid, uptime, Collections.unmodifiableMap(tables), (flags & FLAG_SOFT_DIRTY_CLEARED) != 0);
    }

    private static void expect(Path file, ByteBuffer b, int offset, String field, int expected) {
        int v = b.getInt(offset);
        if (v != expected) {
            throw new DigestFileException(file, offset, field, v + " != " + expected + " (written by another version"
                    + " of pageflux?)");
        }
    }

    /** Writes little-endian fields through a 64 KiB buffer while checksumming them for the trailer. */
    private static final class HashingWriter {
        private final FileChannel ch;
        private final ByteBuffer buf = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);
        private final CRC32C crc = new CRC32C();

        HashingWriter(FileChannel ch) {
            this.ch = ch;
        }

        HashingWriter putInt(int v) throws IOException {
            room(4);
            buf.putInt(v);
            return this;
        }

        HashingWriter putLong(long v) throws IOException {
            room(8);
            buf.putLong(v);
            return this;
        }

        private void room(int n) throws IOException {
            if (buf.remaining() < n) {
                flush();
            }
        }

        private void flush() throws IOException {
            buf.flip();
            crc.update(buf.array(), 0, buf.limit());
            while (buf.hasRemaining()) {
                ch.write(buf);
            }
            buf.clear();
        }

        long finish() throws IOException {
            flush();
            return crc.getValue();
        }
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof PageDigests other) || other.pid != pid || other.dumpUptimeMicros != dumpUptimeMicros
                || other.softDirtyCleared != softDirtyCleared
                || !other.tables.keySet().equals(tables.keySet())) {
            return false;
        }
        for (Map.Entry<PagemapId, Table> e : tables.entrySet()) {
            Table a = e.getValue();
            Table b = other.tables.get(e.getKey());
            if (!Arrays.equals(a.starts, b.starts) || !Arrays.equals(a.counts, b.counts)
                    || !Arrays.equals(a.digests, b.digests)) {
                return false;
            }
        }
        return true;
    }

    @Override
    public int hashCode() {
        return Objects.hash(pid, dumpUptimeMicros, tables.keySet());
    }

    @Override
    public String toString() {
        return "PageDigests[pid=" + pid + " dump_uptime=" + dumpUptimeMicros + " pagemaps=" + tables.size()
                + " pages=" + pages() + " runs=" + runs() + (softDirtyCleared ? " soft-dirty-cleared" : "") + "]";
    }
}
