package io.pageflux.sink.compress;

import io.pageflux.sink.criu.Vectors.SourceRun;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Realistic-ish page contents and run layouts for compression tests, reproducible from a seed. */
public final class PageData {

    public static final int PID = 4242;
    public static final long SHMID = 77;

    private static final String[] WORDS = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
            "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra"};

    private PageData() {
    }

    /** JSON-lines text such as a heap full of strings holds: compresses well, but not trivially. */
    public static byte[] text(long seed, int pages) {
        Random r = new Random(seed);
        byte[] out = new byte[pages * PageRun.PAGE_SIZE];
        StringBuilder sb = new StringBuilder();
        while (sb.length() < out.length) {
            sb.append("{\"id\":").append(r.nextInt(1_000_000)).append(",\"user\":\"").append(WORDS[r.nextInt(WORDS.length)])
                    .append('_').append(r.nextInt(10_000)).append("\",\"tags\":[\"").append(WORDS[r.nextInt(WORDS.length)])
                    .append("\",\"").append(WORDS[r.nextInt(WORDS.length)]).append("\"],\"score\":")
                    .append(r.nextInt(100_000) / 1000.0).append(",\"active\":").append(r.nextBoolean()).append("}\n");
        }
        byte[] text = sb.toString().getBytes(StandardCharsets.US_ASCII);
        System.arraycopy(text, 0, out, 0, out.length);
        return out;
    }

    /** Heap-like structs: headers, small ints, pointers into one area, some zero padding. */
    public static byte[] structured(long seed, int pages) {
        Random r = new Random(seed);
        ByteBuffer b = ByteBuffer.allocate(pages * PageRun.PAGE_SIZE).order(ByteOrder.LITTLE_ENDIAN);
        long base = 0x7f3a_2000_0000L + (seed << 20);
        while (b.remaining() >= 32) {
            b.putLong(0x0000_0001_0000_0000L | r.nextInt(64)); // mark word + class id
            b.putLong(base + (long) r.nextInt(1 << 20) * 16); // pointer
            b.putInt(r.nextInt(1000));
            b.putInt(r.nextInt(3) == 0 ? 0 : r.nextInt());
            b.putLong(0);
        }
        return b.array();
    }

    public static byte[] random(long seed, int pages) {
        byte[] out = new byte[pages * PageRun.PAGE_SIZE];
        new Random(seed).nextBytes(out);
        return out;
    }

    /**
     * A task pagemap and a shared-object pagemap with runs of 1 to 300 pages of mixed contents
     * (text, structs, random, zeros), gaps between runs, lazy and plain present flags, and a
     * PE_PARENT hole; sorted by address like a source produces them.
     */
    public static List<SourceRun> runs(long seed) {
        Random r = new Random(seed);
        List<SourceRun> out = new ArrayList<>();
        long address = 0x5555_0000_0000L;
        int[] sizes = {1, 3, 17, 64, 300, 2, 129, 256, 5, 40, 1, 90};
        for (int i = 0; i < sizes.length; i++) {
            int pages = sizes[i];
            byte[] bytes = switch (i % 4) {
                case 0 -> text(seed + i, pages);
                case 1 -> structured(seed + i, pages);
                case 2 -> i == 6 ? random(seed + i, pages) : text(seed * 31 + i, pages);
                default -> new byte[pages * PageRun.PAGE_SIZE];
            };
            int flags = i % 3 == 1 ? PageFlags.PE_LAZY | PageFlags.PE_PRESENT : PageFlags.PE_PRESENT;
            if (i == 9) {
                flags = PageFlags.PE_PARENT;
                bytes = new byte[pages * PageRun.PAGE_SIZE];
            }
            out.add(new SourceRun(new PageRun(address, pages, PagemapId.task(PID), address, flags), bytes));
            // sometimes contiguous with the next run (the writer merges them), mostly a gap
            address += (long) pages * PageRun.PAGE_SIZE + (r.nextInt(3) == 0 ? 0 : (1 + r.nextInt(50)) * 4096L);
        }
        // a shared anonymous object mapped at a higher address: offsets inside the object
        long shm = 0x7ff0_0000_0000L;
        out.add(new SourceRun(new PageRun(shm, 24, PagemapId.shmem(SHMID), 0, PageFlags.PE_PRESENT),
                structured(seed + 100, 24)));
        out.add(new SourceRun(new PageRun(shm + 30 * 4096L, 8, PagemapId.shmem(SHMID), 30 * 4096L,
                PageFlags.PE_PRESENT), text(seed + 101, 8)));
        return out;
    }

    /** Total PE_PRESENT pages of {@code runs}. */
    public static long presentPages(List<SourceRun> runs) {
        return runs.stream().filter(s -> PageFlags.has(s.run().flags(), PageFlags.PE_PRESENT))
                .mapToLong(s -> s.run().pages()).sum();
    }

    /** Asserts two directories hold the same names, the same bytes in every file and the same link targets. */
    public static void assertSameTree(Path expected, Path actual) throws IOException {
        List<String> a = names(expected);
        List<String> b = names(actual);
        assertEquals(a, b, "file names of " + actual + " vs " + expected);
        for (String name : a) {
            Path x = expected.resolve(name);
            Path y = actual.resolve(name);
            if (Files.isSymbolicLink(x)) {
                assertEquals(Files.readSymbolicLink(x), Files.readSymbolicLink(y), "link " + name);
            } else {
                assertEquals(-1L, Files.mismatch(x, y), "first differing byte of " + name + " (" + Files.size(x)
                        + " vs " + Files.size(y) + " bytes)");
            }
        }
    }

    public static List<String> names(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    /** Names next to {@code dir} that look like leftovers of a writer ({@code .name.partial-*}). */
    public static List<String> partials(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir.getParent())) {
            return s.map(p -> p.getFileName().toString())
                    .filter(n -> n.startsWith("." + dir.getFileName() + ".partial-")).toList();
        }
    }

    public static boolean exists(Path p) {
        return Files.exists(p, LinkOption.NOFOLLOW_LINKS);
    }
}
