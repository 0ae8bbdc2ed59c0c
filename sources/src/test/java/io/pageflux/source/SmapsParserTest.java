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

    /** Paths with spaces, a deleted file, a named anonymous region, no path, an unknown field, no VmFlags. */
    static String trickyText() {
        return """
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
    }

    @Test
    void trickyPaths() {
        List<MemoryRegion> regions = Smaps.parse(trickyText());
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

    @Test
    void oddPathsAndValues() {
        String text = "00400000-00401000 rw-p 00000000 08:01 7      /a  b\t(c) (deleted)  \r\n"
                + "Rss:\t \t12 kB  \r\n"
                + "Pss:0\r\n"
                + "Size:                  4 kB\r\n"
                + "THPeligible:    1\r\n"
                + "Locked:    4 MB\r\n"
                + "ProtectionKey: \r\n"
                + "VmFlags:  rd\t wr  rd \r\n"
                + "\r\n"
                + "   \t \r\n"
                + "00401000-00402000 r--p 00000000 fd:1a 18446744073709551615 /tmp/caf\u00e9 \ud83d\ude00\n"
                + "ffffffffff600000-ffffffffff601000 --xp 0000000000000000 00:00 0  [vsyscall]";
        List<MemoryRegion> regions = Smaps.parse(text);
        assertEquals(3, regions.size());
        MemoryRegion first = regions.get(0);
        // everything after the padding, inner and trailing spaces and tabs included
        assertEquals("/a  b\t(c) (deleted)  ", first.path());
        assertEquals(12L, first.fields().get("Rss"));
        assertEquals(0L, first.fields().get("Pss"));
        assertEquals(1L, first.fields().get("THPeligible"));
        assertFalse(first.fields().containsKey("Locked"), "a unit other than kB is not a number this parser knows");
        assertFalse(first.fields().containsKey("ProtectionKey"), "no value");
        assertEquals(Set.of("rd", "wr"), first.vmFlags());
        MemoryRegion second = regions.get(1);
        assertEquals("fd:1a", second.device());
        assertEquals(-1L, second.inode(), "the largest unsigned inode");
        assertEquals("/tmp/caf\u00e9 \ud83d\ude00", second.path());
        assertEquals(Set.of(), second.vmFlags(), "no VmFlags line");
        assertEquals("[vsyscall]", regions.get(2).path());
        assertEquals(0xffffffffff600000L, regions.get(2).start());
    }

    @Test
    void malformedHeadersAreNotHeaders() {
        String[] notHeaders = {
                "00400000-00401000 rw-p 00000000 08:01",           // no inode
                "00400000-00401000 rw-p 00000000 08:01 1x /bin/x", // inode not a number
                "0040000A-00401000 rw-p 00000000 08:01 1 /bin/x",  // upper-case hex
                "00400000 00401000 rw-p 00000000 08:01 1 /bin/x",  // no dash
                "00400000-00401000 rw-pp 00000000 08:01 1 /bin/x", // five permission characters
                "00400000-00401000 rw\tp 00000000 08:01 1 /bin/x", // whitespace in the permissions
                "00400000-00401000 rw-p 00000000 0801 1 /bin/x",   // device without a colon
                "00400000-00401000  rw-p 00000000 08:01 1 /bin/x", // two spaces between columns
                "00400000-00401000 rw-p 00000000 08:01 1 /bin/\u2028x", // a line separator in the path
        };
        for (String header : notHeaders) {
            String text = "00300000-00301000 rw-p 00000000 00:00 0\n" + header + "\n";
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Smaps.parse(text), header);
            assertEquals("malformed smaps: source=text line=2 content='" + header + "' reason=neither a VMA header "
                    + "(start-end perms offset dev inode path) nor a 'Name: value' field", e.getMessage());
        }
    }

    @Test
    void numbersOutOfRange() {
        IllegalArgumentException address = assertThrows(IllegalArgumentException.class,
                () -> Smaps.parse("1ffffffffffffffff-2ffffffffffffffff rw-p 00000000 08:01 1 /x\n"));
        assertEquals("malformed smaps: source=text line=1 content='1ffffffffffffffff-2ffffffffffffffff rw-p 00000000 "
                + "08:01 1 /x' reason=number out of range (String value 1ffffffffffffffff exceeds range of unsigned "
                + "long.)", address.getMessage());
        // leading zeros are not significant: 20 hex digits that fit
        assertEquals(0x400000L, Smaps.parse("00000000000000400000-00000000000000401000 rw-p 0 0:0 0\n").get(0).start());

        IllegalArgumentException inode = assertThrows(IllegalArgumentException.class,
                () -> Smaps.parse("00400000-00401000 rw-p 00000000 08:01 18446744073709551616 /x\n"));
        assertTrue(inode.getMessage().contains("line=1") && inode.getMessage().contains("reason=number out of range"),
                inode.getMessage());

        IllegalArgumentException field = assertThrows(IllegalArgumentException.class,
                () -> Smaps.parse("00400000-00401000 rw-p 00000000 08:01 1 /x\nRss: 9223372036854775808 kB\n"));
        assertEquals("malformed smaps: source=text line=2 content='Rss: 9223372036854775808 kB' reason=value out of "
                + "range", field.getMessage());
        assertEquals(Long.MAX_VALUE, Smaps.parse("00400000-00401000 rw-p 00000000 08:01 1 /x\nRss: "
                + "9223372036854775807 kB\n").get(0).fields().get("Rss"));
    }

    @Test
    void longContentIsCutInTheMessage() {
        String garbage = "#".repeat(500);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Smaps.parse(garbage));
        assertTrue(e.getMessage().contains("content='" + "#".repeat(160) + "...'"), e.getMessage());
    }

    private static MemoryRegion byPath(List<MemoryRegion> regions, String path) {
        return regions.stream().filter(r -> r.path().equals(path)).findFirst().orElseThrow();
    }
}
