package io.pageflux.sink.criu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.OptionalInt;
import java.util.OptionalLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** {@link ImageDirectory} reads CRIU 4.2's own files as CRIU's JSON decoding of them says. */
class ImageDirectoryVectorsTest {

    @ParameterizedTest
    @CsvSource({
            "full-dump, pagemap-21384, TASK, 21384",
            "full-dump, pagemap-shmem-32, SHMEM, 32",
            "page-server-dump, pagemap-21384, TASK, 21384",
            "page-server-dump, pagemap-shmem-32, SHMEM, 32",
            "pre-dump-1, pagemap-21384, TASK, 21384",
            "pre-dump-2, pagemap-21384, TASK, 21384"})
    void pagemapsMatchCriusJson(String dump, String name, PagemapId.Kind kind, long id) throws IOException {
        Path dir = Vectors.dir(dump);
        ImageDirectory images = ImageDirectory.open(dir);
        PagemapImage pm = images.pagemap(new PagemapId(kind, id)).orElseThrow();

        assertEquals(dir.resolve(name + ".img"), pm.file());
        assertEquals(Vectors.jsonPagesId(dir.resolve(name + ".json")), pm.pagesId());
        List<Vectors.Entry> expected = Vectors.jsonEntries(dir.resolve(name + ".json"));
        assertEquals(expected, Vectors.entries(pm));
        // CRIU 4.2 writes compat_nr_pages 0: the count must come from nr_pages (field 5)
        assertTrue(pm.entries().stream().allMatch(e -> e.nrPages() > 0));
        long present = expected.stream().filter(e -> (e.flags() & 4) != 0).mapToLong(Vectors.Entry::nrPages).sum();
        assertEquals(present, pm.presentPages());
        assertEquals(present * PageRun.PAGE_SIZE, Files.size(dir.resolve(pm.pagesFileName())));
    }

    @Test
    void fullDumpTotalsAndOrder() throws IOException {
        ImageDirectory images = ImageDirectory.open(Vectors.dir("full-dump")).verify();
        // pages_id order: CRIU gave the shmem object 1, the task 2
        assertEquals(List.of(PagemapId.shmem(32), PagemapId.task(21384)),
                images.pagemaps().stream().map(PagemapImage::id).toList());
        assertEquals(8 + 111, images.presentPages());
        assertEquals(1 + 24, images.entries());
        assertEquals(0, images.parentPages());
        assertTrue(images.parentLink().isEmpty());
        assertEquals(32768 + 454656, images.pagesBytes());
    }

    @Test
    void preDump2IsAllHolesWithNoBytes() throws IOException {
        ImageDirectory images = ImageDirectory.open(Vectors.dir("pre-dump-2")).verify();
        PagemapImage pm = images.pagemap(PagemapId.task(21384)).orElseThrow();
        assertEquals(0, pm.presentPages());
        assertEquals(95, pm.parentPages());
        assertTrue(pm.entries().stream().allMatch(e -> e.inParent() && e.pagesOffset() == -1));
    }

    @ParameterizedTest
    @CsvSource({"full-dump", "pre-dump-1", "pre-dump-2"})
    void inventoriesMatchCriusJson(String dump) throws IOException {
        Path dir = Vectors.dir(dump);
        InventoryImage inv = ImageDirectory.open(dir).inventory().orElseThrow();
        JsonNode json = Vectors.json(dir.resolve("inventory.json")).get("entries").get(0);
        assertEquals(json.get("img_version").asInt(), inv.imgVersion());
        assertEquals(json.has("dump_uptime") ? OptionalLong.of(json.get("dump_uptime").asLong()) : OptionalLong.empty(),
                inv.dumpUptime());
        assertEquals(json.has("pre_dump_mode") ? OptionalInt.of(json.get("pre_dump_mode").asInt()) : OptionalInt.empty(),
                inv.preDumpMode());
        assertTrue(inv.message().hasPluginsEntry());
    }

    @Test
    void fullDumpInventoryKeepsFieldsPagefluxDoesNotDecode() throws IOException {
        InventoryImage inv = ImageDirectory.open(Vectors.dir("full-dump")).inventory().orElseThrow();
        assertEquals(2, inv.imgVersion());
        // root_ids, lsmtype, dump_criu_run_id, ... survive as unknown fields
        assertFalse(inv.message().getUnknownFields().asMap().isEmpty());
    }

    /** The page bytes are where the entries say: check them against layout.txt's fill patterns. */
    @Test
    void readPagesFindsTheSampleContents() throws IOException {
        ImageDirectory images = ImageDirectory.open(Vectors.dir("full-dump"));
        PagemapImage task = images.pagemap(PagemapId.task(21384)).orElseThrow();
        long a = 0x7fec109b6000L;
        PagemapImage.Entry entryA = task.entries().stream().filter(e -> e.vaddr() == a).findFirst().orElseThrow();
        ByteBuffer region = images.readPages(task, entryA);
        assertEquals(64 * 4096, region.remaining());
        for (int i = 0; i < region.remaining(); i += 997) {
            assertEquals((byte) (((i / 4096) * 7 + (i % 251)) & 0xff), region.get(i), "A byte " + i);
        }
        // B's even pages: page 4 of B (0x7fec1099a000) is filled with 0xA0 + 4
        PagemapImage.Entry b4 = task.entries().stream().filter(e -> e.vaddr() == 0x7fec1099a000L).findFirst()
                .orElseThrow();
        ByteBuffer page = images.readPages(task, b4);
        for (int i = 0; i < 4096; i++) {
            assertEquals((byte) 0xA4, page.get(i));
        }
        // C, PROT_NONE, the first 16 pages of the 17-page entry: 0x5C; page 17 is B's page 0 (0xA0)
        PagemapImage.Entry c = task.entries().stream().filter(e -> e.vaddr() == 0x7fec10986000L).findFirst()
                .orElseThrow();
        assertEquals((byte) 0x5C, images.readPages(task, c, 15, 1).get(4095));
        assertEquals((byte) 0xA0, images.readPages(task, c, 16, 1).get(0));
        PagemapImage shm = images.pagemap(PagemapId.shmem(32)).orElseThrow();
        ByteBuffer d = images.readPages(shm, shm.entries().get(0));
        while (d.hasRemaining()) {
            assertEquals((byte) 0xD5, d.get());
        }
    }

    @Test
    void parentLinkIsResolvedRelativeToTheDirectory(@TempDir Path tmp) throws IOException {
        Path pd1 = Files.createDirectory(tmp.resolve("pd1"));
        Path pd2 = Files.createDirectory(tmp.resolve("pd2"));
        Files.copy(Vectors.dir("pre-dump-1").resolve("pagemap-21384.img"), pd1.resolve("pagemap-21384.img"));
        Files.copy(Vectors.dir("pre-dump-1").resolve("pages-65537.img"), pd1.resolve("pages-65537.img"));
        Files.createSymbolicLink(pd2.resolve("parent"), Path.of("../pd1"));
        ImageDirectory images = ImageDirectory.open(pd2);
        assertEquals(Path.of("../pd1"), images.parentLink().orElseThrow());
        assertEquals(pd1, images.parent().orElseThrow());
        assertEquals(95, images.openParent().orElseThrow().presentPages());
    }
}
