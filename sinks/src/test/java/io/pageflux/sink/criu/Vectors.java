package io.pageflux.sink.criu;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** The CRIU 4.2 vectors copied into the test resources, and what can be derived from them. */
public final class Vectors {

    public static final int PID = 21384;
    public static final long SHMID = 32;
    /** Start of region D (the shared anonymous object) in the task. */
    public static final long D_START = 0x7fec1097e000L;
    public static final ObjectMapper JSON = new ObjectMapper();

    private Vectors() {
    }

    public static Path root() {
        try {
            return Path.of(Vectors.class.getResource("/criu-4.2-small").toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    public static Path dir(String name) {
        return root().resolve(name);
    }

    /** An entry as CRIU's own JSON decoding shows it. */
    public record Entry(long vaddr, long nrPages, int flags) {
        @Override
        public String toString() {
            return String.format("0x%x+%d %s", vaddr, nrPages, PageFlags.describe(flags));
        }
    }

    /** {@code PE_LAZY | PE_PRESENT} -> 6. */
    public static int flags(String text) {
        int f = 0;
        for (String part : text.split("\\|")) {
            switch (part.trim()) {
                case "PE_PARENT" -> f |= PageFlags.PE_PARENT;
                case "PE_LAZY" -> f |= PageFlags.PE_LAZY;
                case "PE_PRESENT" -> f |= PageFlags.PE_PRESENT;
                default -> throw new IllegalArgumentException("unknown flag '" + part + "' in " + text);
            }
        }
        return f;
    }

    public static JsonNode json(Path file) throws IOException {
        return JSON.readTree(file.toFile());
    }

    /** pages_id of the head in CRIU's JSON of a pagemap. */
    public static long jsonPagesId(Path json) throws IOException {
        return json(json).get("entries").get(0).get("pages_id").asLong();
    }

    /** The entries in CRIU's JSON of a pagemap (CRIU 4.2 spells the count nr_pages, vaddr in hex). */
    public static List<Entry> jsonEntries(Path json) throws IOException {
        JsonNode entries = json(json).get("entries");
        List<Entry> out = new ArrayList<>();
        for (int i = 1; i < entries.size(); i++) {
            JsonNode e = entries.get(i);
            out.add(new Entry(Long.decode(e.get("vaddr").asText()), e.get("nr_pages").asLong(),
                    flags(e.get("flags").asText())));
        }
        return out;
    }

    public static List<Entry> entries(PagemapImage pm) {
        return pm.entries().stream().map(e -> new Entry(e.vaddr(), e.nrPages(), e.flags())).toList();
    }

    /** maps.txt as regions (no smaps fields). */
    public static List<MemoryRegion> maps() throws IOException {
        List<MemoryRegion> out = new ArrayList<>();
        for (String line : Files.readAllLines(root().resolve("maps.txt"))) {
            String[] f = line.trim().split("\\s+", 6);
            String[] range = f[0].split("-");
            out.add(new MemoryRegion(Long.parseUnsignedLong(range[0], 16), Long.parseUnsignedLong(range[1], 16), f[1],
                    Long.parseLong(f[2], 16), f[3], Long.parseLong(f[4]), f.length > 5 ? f[5] : "", Set.of(), Map.of()));
        }
        return out;
    }

    /** A run a source would produce, with its bytes (zeros for runs without PE_PRESENT). */
    public record SourceRun(PageRun run, byte[] bytes) {
    }

    /**
     * The runs implied by a CRIU directory: every entry of its task and shmem pagemaps, cut at
     * the VMA boundaries of maps.txt (CRIU merges across them), with the bytes from its pages
     * files, in task address order (the shmem object sits at {@link #D_START}).
     *
     * @param flagsOverride if not 0, the flags every run gets (e.g. PE_PARENT to replay as holes)
     */
    public static List<SourceRun> runs(Path criuDir, int flagsOverride) throws IOException {
        ImageDirectory images = ImageDirectory.open(criuDir);
        List<MemoryRegion> maps = maps();
        List<SourceRun> out = new ArrayList<>();
        for (PagemapImage pm : images.pagemaps()) {
            boolean shmem = pm.id().kind() == PagemapId.Kind.SHMEM;
            long base = shmem ? D_START : 0;
            for (PagemapImage.Entry e : pm.entries()) {
                long v = e.vaddr();
                long left = e.nrPages();
                while (left > 0) {
                    long address = base + v;
                    MemoryRegion r = maps.stream().filter(m -> m.contains(address)).findFirst()
                            .orElseThrow(() -> new IllegalStateException("no VMA for 0x" + Long.toHexString(address)));
                    long n = Math.min(left, (r.end() - address) / PageRun.PAGE_SIZE);
                    long from = e.nrPages() - left;
                    int flags = flagsOverride != 0 ? flagsOverride : e.flags();
                    byte[] bytes = new byte[(int) (n * PageRun.PAGE_SIZE)];
                    if (e.present()) {
                        ByteBuffer b = images.readPages(pm, e, from, (int) n);
                        b.get(bytes);
                    }
                    out.add(new SourceRun(new PageRun(address, n, pm.id(), v, flags), bytes));
                    v += n * PageRun.PAGE_SIZE;
                    left -= n;
                }
            }
        }
        out.sort(Comparator.comparingLong(s -> s.run().address()));
        return out;
    }
}
