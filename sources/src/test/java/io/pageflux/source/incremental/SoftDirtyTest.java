package io.pageflux.source.incremental;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.sample.SampleProcess;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.GZIPInputStream;
import org.junit.jupiter.api.Test;

/** Soft-dirty against recorded pagemap fixtures: this kernel has no soft-dirty bits to test with. */
class SoftDirtyTest {

    private static final long X = 0x7fea1e7f3000L;
    private static final int LAZY = PageFlags.PE_LAZY | PageFlags.PE_PRESENT;

    private static long[] fixture() throws IOException {
        List<Long> entries = new ArrayList<>();
        try (InputStream in = SoftDirtyTest.class.getResourceAsStream("softdirty-pagemap.txt")) {
            for (String line : new String(in.readAllBytes(), StandardCharsets.US_ASCII).split("\n")) {
                String value = line.replaceAll("#.*", "").trim();
                if (!value.isEmpty()) {
                    entries.add(Long.parseUnsignedLong(value.substring(2), 16));
                }
            }
        }
        return entries.stream().mapToLong(Long::longValue).toArray();
    }

    @Test
    void dirtyPagesAreReadCleanPagesOfTheParentBecomeHoles() throws IOException {
        long[] entries = fixture();
        assertEquals(16, entries.length);
        assertEquals(5, SoftDirty.dirtyPages(entries));
        PageRun run = new PageRun(X, 16, PagemapId.task(7), X, LAZY);
        // the parent has every page but the last: page 15 is clean yet must be read
        List<PageRun> pieces = SoftDirty.split(run, entries, vaddr -> vaddr != X + 15 * 4096L);
        PagemapId pm = PagemapId.task(7);
        assertEquals(List.of(
                new PageRun(X, 1, pm, X, LAZY),
                new PageRun(X + 4096, 3, pm, X + 4096, PageFlags.PE_PARENT),
                new PageRun(X + 4 * 4096, 1, pm, X + 4 * 4096, LAZY),
                new PageRun(X + 5 * 4096, 3, pm, X + 5 * 4096, PageFlags.PE_PARENT),
                new PageRun(X + 8 * 4096, 1, pm, X + 8 * 4096, LAZY),
                new PageRun(X + 9 * 4096, 3, pm, X + 9 * 4096, PageFlags.PE_PARENT),
                new PageRun(X + 12 * 4096, 2, pm, X + 12 * 4096, LAZY),
                new PageRun(X + 14 * 4096, 1, pm, X + 14 * 4096, PageFlags.PE_PARENT),
                new PageRun(X + 15 * 4096, 1, pm, X + 15 * 4096, LAZY)), pieces);
        long total = pieces.stream().mapToLong(PageRun::pages).sum();
        assertEquals(16, total, "the pieces cover the run exactly");
    }

    @Test
    void withoutAParentNothingIsAHole() throws IOException {
        PageRun run = new PageRun(X, 16, PagemapId.task(7), X, LAZY);
        assertEquals(List.of(run), SoftDirty.split(run, fixture(), vaddr -> false));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> SoftDirty.split(new PageRun(X, 17, PagemapId.task(7), X, LAZY), new long[16], v -> true));
        assertTrue(e.getMessage().contains("has 17 pages but only 16 pagemap entries"), e.getMessage());
    }

    @Test
    void supportIsReadFromTheSdVmFlag() throws IOException {
        String withSd;
        try (InputStream in = SoftDirtyTest.class.getResourceAsStream("smaps-softdirty-kernel.txt")) {
            withSd = new String(in.readAllBytes(), StandardCharsets.US_ASCII);
        }
        assertTrue(SoftDirty.supported(withSd));
        assertFalse(SoftDirty.supported(withSd.replace(" sd ", " ")));
        assertFalse(SoftDirty.supported("VmFlags: rd wr sdx\n"));
    }

    @Test
    void thisKernelsSupportMatchesItsConfig() throws IOException {
        Path config = Path.of("/proc/config.gz");
        assumeTrue(Files.isReadable(config), "no /proc/config.gz to compare with");
        String text;
        try (InputStream in = new GZIPInputStream(Files.newInputStream(config))) {
            text = new String(in.readAllBytes(), StandardCharsets.US_ASCII);
        }
        assertEquals(text.contains("\nCONFIG_MEM_SOFT_DIRTY=y"), SoftDirty.supported());
    }

    @Test
    void clearingWorksOnALiveProcessAndFailsClearlyOnAGoneOne() throws Exception {
        try (SampleProcess target = SampleProcess.start()) {
            SoftDirty.clear(target.pid()); // accepted even where it does nothing
            assertTrue(target.isAlive());
        }
        Process p = new ProcessBuilder("true").start();
        p.waitFor();
        ProcessGoneException e = assertThrows(ProcessGoneException.class, () -> SoftDirty.clear((int) p.pid()));
        assertTrue(e.getMessage().contains("pid=" + p.pid()), e.getMessage());
    }
}
