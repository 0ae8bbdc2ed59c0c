package io.pageflux.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code pageflux inspect} on CRIU 4.2's own full dump (the vectors, copied into test resources)
 * and on damaged copies of it. Depends on: ImageDirectory (images).
 */
class InspectCommandTest {

    private static final String VECTOR = "/criu-4.2-full-dump/";
    private static final List<String> FILES = List.of("pagemap-21384.img", "pagemap-shmem-32.img", "pages-1.img",
            "pages-2.img", "inventory.img");

    @TempDir
    Path dir;

    @BeforeEach
    void copyVector() throws IOException {
        for (String f : FILES) {
            try (InputStream in = getClass().getResourceAsStream(VECTOR + f)) {
                Files.copy(in, dir.resolve(f));
            }
        }
    }

    @Test
    void jsonListsExactlyTheEntriesCriuDecoded() throws Exception {
        Cli.Result r = Cli.run("inspect", dir.toString(), "--json");
        assertEquals(0, r.exit(), r.toString());
        JsonNode ours = Reports.JSON.readTree(r.out());
        assertTrue(ours.get("verified").asBoolean());

        long totalPages = 0;
        int checked = 0;
        for (JsonNode pm : ours.get("pagemaps")) {
            String file = pm.get("file").asText();
            JsonNode criu;
            try (InputStream in = getClass().getResourceAsStream(VECTOR + file.replace(".img", ".json"))) {
                criu = Reports.JSON.readTree(in).get("entries");
            }
            assertEquals(criu.get(0).get("pages_id").asLong(), pm.get("pagesId").asLong(), file);
            assertEquals(criu.size() - 1, pm.get("entries").size(), file);
            for (int i = 0; i < pm.get("entries").size(); i++) {
                JsonNode e = pm.get("entries").get(i);
                JsonNode c = criu.get(i + 1);
                assertEquals(c.get("vaddr").asText(), e.get("vaddr").asText(), file + " entry " + i);
                assertEquals(c.get("nr_pages").asLong(), e.get("nrPages").asLong(), file + " entry " + i);
                assertEquals(c.get("flags").asText(), e.get("flags").asText(), file + " entry " + i);
                totalPages += e.get("nrPages").asLong();
                checked++;
            }
        }
        assertEquals(2, ours.get("pagemaps").size());
        assertTrue(checked > 10, "only " + checked + " entries");
        // pages-1.img (32768 B) + pages-2.img (454656 B) are exactly the present pages
        assertEquals((32768 + 454656) / 4096, totalPages);
        assertEquals(32768 + 454656, ours.at("/totals/pagesBytes").asLong());
        assertEquals(2, ours.at("/inventory/imgVersion").asInt());
        assertEquals(totalPages, ours.at("/totals/presentPages").asLong());
    }

    @Test
    void textShowsEntriesTotalsAndTheCheck() {
        Cli.Result r = Cli.run("inspect", dir.toString());
        assertEquals(0, r.exit(), r.toString());
        assertTrue(r.out().contains("pagemap-shmem-32.img  pages_id=1  data=pages-1.img"), r.out());
        assertTrue(r.out().contains("pagemap-21384.img  pages_id=2  data=pages-2.img"), r.out());
        assertTrue(r.out().matches("(?s).*\\n\\s+0\\s+0x0\\s+8\\s+PE_PRESENT\\s+0\\n.*"), r.out());
        assertTrue(r.out().matches("(?s).*\\n\\s+0\\s+0x401000\\s+1\\s+PE_PRESENT\\s+0\\n.*"), r.out());
        assertTrue(r.out().contains("total: 2 pagemaps, "), r.out());
        assertTrue(r.out().contains(" present pages (" + io.pageflux.source.DataSize.format(32768 + 454656) + ")"),
                r.out());
        assertTrue(r.out().contains("check: OK"), r.out());
    }

    @Test
    void truncatedPagemapIsBadInputNamingFileAndOffset() throws Exception {
        Path pm = dir.resolve("pagemap-21384.img");
        byte[] bytes = Files.readAllBytes(pm);
        Files.write(pm, java.util.Arrays.copyOf(bytes, bytes.length - 3));
        Cli.Result r = Cli.run("inspect", dir.toString());
        assertEquals(2, r.exit(), r.toString());
        assertTrue(r.err().contains("file=" + pm), r.err());
        assertTrue(r.err().contains("offset="), r.err());
        assertEquals("", r.out());
    }

    @Test
    void wrongMagicIsBadInput() throws Exception {
        Path pm = dir.resolve("pagemap-shmem-32.img");
        byte[] bytes = Files.readAllBytes(pm);
        bytes[4] ^= 0x01; // the pagemap magic, after the common magic
        Files.write(pm, bytes);
        Cli.Result r = Cli.run("inspect", dir.toString(), "--json");
        assertEquals(2, r.exit(), r.toString());
        assertTrue(r.err().contains("file=" + pm + " offset=4"), r.err());
        assertTrue(r.err().toLowerCase().contains("magic"), r.err());
        assertEquals("", r.out());
    }

    @Test
    void garbageFileIsBadInput() throws Exception {
        byte[] junk = new byte[300];
        new Random(42).nextBytes(junk);
        Path pm = dir.resolve("pagemap-21384.img");
        Files.write(pm, junk);
        Cli.Result r = Cli.run("inspect", dir.toString());
        assertEquals(2, r.exit(), r.toString());
        assertTrue(r.err().startsWith("pageflux: bad image: file=" + pm + " offset=0"), r.err());
    }

    @Test
    void missingPageBytesAreBadInput() throws Exception {
        Path pages = dir.resolve("pages-2.img");
        byte[] bytes = Files.readAllBytes(pages);
        Files.write(pages, java.util.Arrays.copyOf(bytes, bytes.length - 4096));
        Cli.Result r = Cli.run("inspect", dir.toString());
        assertEquals(2, r.exit(), r.toString());
        assertTrue(r.err().contains("file=" + pages), r.err());
        assertTrue(r.err().contains("missing 4096 bytes"), r.err());
    }

    @Test
    void notAnImageDirectoryIsBadInput() throws Exception {
        Cli.Result missing = Cli.run("inspect", dir.resolve("nope").toString());
        assertEquals(2, missing.exit(), missing.toString());
        assertTrue(missing.err().contains("dir=" + dir.resolve("nope") + " does not exist"), missing.err());

        Cli.Result file = Cli.run("inspect", dir.resolve("pages-1.img").toString());
        assertEquals(2, file.exit(), file.toString());
        assertTrue(file.err().contains("is not a directory"), file.err());

        List<Path> keep = new ArrayList<>();
        for (String f : FILES) {
            if (f.startsWith("pagemap")) {
                Files.delete(dir.resolve(f));
            } else {
                keep.add(dir.resolve(f));
            }
        }
        Cli.Result empty = Cli.run("inspect", dir.toString());
        assertEquals(2, empty.exit(), empty.toString());
        assertTrue(empty.err().contains("holds no pagemap-*.img file"), empty.err());
    }
}
