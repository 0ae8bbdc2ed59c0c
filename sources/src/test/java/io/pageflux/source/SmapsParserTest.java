package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** {@link Smaps#parse} on the CRIU vectors' smaps and on crafted text. */
class SmapsParserTest {

    static String resource(String name) throws IOException {
        try (InputStream in = SmapsParserTest.class.getResourceAsStream("/vectors/criu-4.2-small/" + name)) {
            if (in == null) {
                throw new IOException("test resource missing: vectors/criu-4.2-small/" + name);
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    @Test
    void vectorsSmapsHasOneRegionPerMapsLineWithTheSameHeader() throws Exception {
        List<MemoryRegion> regions = Smaps.parse(resource("smaps.txt"));
        List<String> maps = resource("maps.txt").lines().toList();
        assertEquals(maps.size(), regions.size());
        for (int i = 0; i < maps.size(); i++) {
            // maps.txt parsed independently: whitespace-separated columns (no path in the vectors has a space)
            String[] col = maps.get(i).trim().split("\\s+", 6);
            String[] range = col[0].split("-");
            MemoryRegion r = regions.get(i);
            assertEquals(Long.parseUnsignedLong(range[0], 16), r.start(), maps.get(i));
            assertEquals(Long.parseUnsignedLong(range[1], 16), r.end(), maps.get(i));
            assertEquals(col[1], r.perms());
            assertEquals(Long.parseLong(col[2], 16), r.offset());
            assertEquals(col[3], r.device());
            assertEquals(Long.parseLong(col[4]), r.inode());
            assertEquals(col.length > 5 ? col[5].trim() : "", r.path());
            // every VMA's Size field agrees with its address range
            assertEquals(r.size() / 1024, r.fields().get("Size"), r.toString());
            assertEquals(23, r.fields().size(), "23 numeric fields besides VmFlags: " + r.fields().keySet());
        }
    }

    @Test
    void vectorsFieldsAndVmFlags() throws Exception {
        List<MemoryRegion> regions = Smaps.parse(resource("smaps.txt"));
        MemoryRegion first = regions.get(0);
        assertEquals("/usr/local/bin/vtarget", first.path());
        assertEquals(Set.of("rd", "mr", "mw", "me"), first.vmFlags());
        assertEquals(4L, first.fields().get("Rss"));
        assertEquals(4L, first.fields().get("Private_Dirty"));
        assertEquals(0L, first.fields().get("THPeligible"));

        MemoryRegion vvar = byPath(regions, "[vvar]");
        assertEquals(Set.of("rd", "mr", "pf", "io", "de", "dd"), vvar.vmFlags());
        assertTrue(vvar.pseudoPath());

        MemoryRegion shared = byPath(regions, "/dev/zero (deleted)");
        assertEquals(0x7fec1097e000L, shared.start());
        assertEquals("rw-s", shared.perms());
        assertEquals("00:01", shared.device());
        assertEquals(32, shared.inode());
        assertTrue(shared.sharedAnonymous());
        assertTrue(shared.vmFlags().contains("sh"));

        MemoryRegion stack = byPath(regions, "[stack]");
        assertTrue(stack.vmFlags().contains("gd"));

        MemoryRegion protNone = regions.stream().filter(r -> r.start() == 0x7fec10986000L).findFirst().orElseThrow();
        assertEquals("---p", protNone.perms());
        assertEquals("", protNone.path());
        assertTrue(protNone.protNone());
        assertEquals(Set.of("mr", "mw", "me", "ac"), protNone.vmFlags());

        MemoryRegion vsyscall = regions.get(regions.size() - 1);
        assertEquals("[vsyscall]", vsyscall.path());
        assertEquals(0xffffffffff600000L, vsyscall.start());
        assertEquals(0xffffffffff601000L, vsyscall.end());
        assertEquals(1, vsyscall.pages());
        assertEquals(Set.of("ex"), vsyscall.vmFlags());
    }

    @Test
    void trickyPaths() {
        String text = """
                00400000-00401000 r--p 00001000 08:01 1234                               /tmp/my file (1).bin
                Size:                  4 kB
                Rss:                   4 kB
                VmFlags: rd mr mw me
                00401000-00402000 rw-p 00000000 08:01 99                                 /tmp/gone file (deleted)
                VmFlags: rd wr mr mw me ac
                00402000-00404000 rw-p 00000000 00:00 0                                  [anon:my arena]
                Size:                  8 kB
                VmFlags: rd wr mr mw me ac
                00404000-00405000 rw-p 00000000 00:00 0\s
                ProtectionKey:         0
                VmFlags: rd wr mr mw me ac
                00405000-00406000 rw-p 00000000 00:00 0
                Future_Text_Field:     something new
                00406000-00407000 rw-s 00000000 00:05 4711                               [anon_shmem:ring]
                VmFlags: rd wr sh mr mw me ms
                """;
        List<MemoryRegion> regions = Smaps.parse(text);
        assertEquals(6, regions.size());
        assertEquals("/tmp/my file (1).bin", regions.get(0).path());
        assertEquals(0x1000, regions.get(0).offset());
        assertEquals("08:01", regions.get(0).device());
        assertEquals(1234, regions.get(0).inode());
        assertEquals(4L, regions.get(0).fields().get("Rss"));
        assertEquals("/tmp/gone file (deleted)", regions.get(1).path());
        assertEquals("[anon:my arena]", regions.get(2).path());
        assertEquals(8L, regions.get(2).fields().get("Size"));
        assertEquals("", regions.get(3).path(), "no path, trailing space");
        assertEquals(0L, regions.get(3).fields().get("ProtectionKey"));
        assertEquals("", regions.get(4).path(), "no path, no trailing space");
        assertEquals(Set.of(), regions.get(4).vmFlags(), "no VmFlags line");
        assertFalse(regions.get(4).fields().containsKey("Future_Text_Field"), "non-numeric fields are left out");
        assertEquals("[anon_shmem:ring]", regions.get(5).path());
        assertTrue(CriuRegionPolicies.sharedAnonymous(regions.get(5)));
    }

    @Test
    void emptyTextHasNoRegions() {
        assertEquals(List.of(), Smaps.parse(""));
    }

    @Test
    void garbageLineIsNamedWithItsNumber() {
        String text = "00400000-00401000 r--p 00000000 08:01 1 /bin/x\nRss: 4 kB\nthis is not smaps\n";
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Smaps.parse(text));
        assertTrue(e.getMessage().contains("line=3"), e.getMessage());
        assertTrue(e.getMessage().contains("content='this is not smaps'"), e.getMessage());
    }

    @Test
    void fieldBeforeAnyHeader() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Smaps.parse("Rss: 4 kB\n"));
        assertTrue(e.getMessage().contains("line=1"), e.getMessage());
        assertTrue(e.getMessage().contains("before the first VMA header"), e.getMessage());
    }

    @Test
    void badPermissionsAndBadRanges() {
        IllegalArgumentException perms = assertThrows(IllegalArgumentException.class,
                () -> Smaps.parse("00400000-00401000 rw-x 00000000 08:01 1 /bin/x\n"));
        assertTrue(perms.getMessage().contains("line=1") && perms.getMessage().contains("rw-x"), perms.getMessage());

        IllegalArgumentException backwards = assertThrows(IllegalArgumentException.class,
                () -> Smaps.parse("00401000-00400000 rw-p 00000000 08:01 1 /bin/x\n"));
        assertTrue(backwards.getMessage().contains("end address is not above start"), backwards.getMessage());

        String overlapping = "00400000-00402000 rw-p 00000000 00:00 0\n00401000-00403000 rw-p 00000000 00:00 0\n";
        IllegalArgumentException overlap = assertThrows(IllegalArgumentException.class, () -> Smaps.parse(overlapping));
        assertTrue(overlap.getMessage().contains("line=2") && overlap.getMessage().contains("overlaps"),
                overlap.getMessage());
    }

    private static MemoryRegion byPath(List<MemoryRegion> regions, String path) {
        return regions.stream().filter(r -> r.path().equals(path)).findFirst().orElseThrow();
    }
}
