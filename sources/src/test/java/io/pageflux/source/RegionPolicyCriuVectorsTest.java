package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.RegionDecision.Action;
import io.pageflux.source.RegionDecision.PageSelection;
import io.pageflux.source.RegionDecision.ReadVia;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * The CRIU presets applied to the vectors' smaps, checked against what CRIU 4.2 itself dumped from that
 * process (its pagemap images, as CRIU's own JSON decoding).
 */
class RegionPolicyCriuVectorsTest {

    private static final int PAGE = PageRun.PAGE_SIZE;

    /** One pagemap entry of CRIU's JSON. */
    record Entry(long vaddr, long pages, int flags) {
    }

    private static final Pattern ENTRY = Pattern.compile(
            "\"vaddr\": \"0x([0-9a-f]+)\",\\s*\"compat_nr_pages\": \\d+,\\s*\"flags\": \"([A-Z_ |]+)\",\\s*\"nr_pages\": (\\d+)");

    static List<Entry> entries(String json) {
        List<Entry> out = new ArrayList<>();
        Matcher m = ENTRY.matcher(json);
        while (m.find()) {
            int flags = 0;
            for (String f : m.group(2).split("\\s*\\|\\s*")) {
                flags |= switch (f.trim()) {
                    case "PE_PARENT" -> PageFlags.PE_PARENT;
                    case "PE_LAZY" -> PageFlags.PE_LAZY;
                    case "PE_PRESENT" -> PageFlags.PE_PRESENT;
                    default -> throw new IllegalArgumentException("flag " + f);
                };
            }
            out.add(new Entry(Long.parseUnsignedLong(m.group(1), 16), Long.parseLong(m.group(3)), flags));
        }
        return out;
    }

    private static MemoryRegion regionOf(List<MemoryRegion> regions, long address) {
        return regions.stream().filter(r -> r.contains(address)).findFirst()
                .orElseThrow(() -> new AssertionError("CRIU dumped 0x" + Long.toHexString(address) + " outside any VMA"));
    }

    /**
     * Every page CRIU put in the task pagemap lies in a VMA the policy dumps into the task pagemap, with the
     * flags our runs would carry; the VMAs the policy skips hold no CRIU page; the VMAs it dumps but CRIU
     * took nothing from have no anonymous memory (so there was nothing for CRIU to take) — except [vdso].
     */
    private static void checkTaskPagemap(RegionPolicy policy, List<MemoryRegion> regions, List<Entry> criu) {
        Set<MemoryRegion> criuTouched = new HashSet<>();
        for (Entry e : criu) {
            for (long p = 0; p < e.pages(); p++) {
                long address = e.vaddr() + p * PAGE;
                MemoryRegion r = regionOf(regions, address);
                RegionDecision d = policy.decide(r);
                assertEquals(Action.DUMP, d.action(), "CRIU dumped 0x" + Long.toHexString(address) + " from " + r);
                assertFalse(CriuRegionPolicies.sharedAnonymous(r), "task pagemap page in a shmem VMA: " + r);
                int ours = PageFlags.PE_PRESENT | (d.lazy() ? PageFlags.PE_LAZY : 0);
                assertEquals(PageFlags.describe(e.flags()), PageFlags.describe(ours),
                        "flags of 0x" + Long.toHexString(address) + " in " + r);
                criuTouched.add(r);
            }
        }
        for (MemoryRegion r : regions) {
            RegionDecision d = policy.decide(r);
            if (!d.dumped()) {
                assertFalse(criuTouched.contains(r), "skipped a VMA CRIU dumped from: " + r);
            } else if (!criuTouched.contains(r) && !CriuRegionPolicies.sharedAnonymous(r)) {
                assertEquals(0L, r.fields().get("Anonymous"), "dumped VMA without CRIU pages has anon memory: " + r);
            }
        }
    }

    @Test
    void fullDumpSelectsWhatCriuDumped() throws Exception {
        List<MemoryRegion> regions = Smaps.parse(SmapsParserTest.resource("smaps.txt"));
        RegionPolicy full = RegionPolicy.criuFullDump();
        checkTaskPagemap(full, regions, entries(SmapsParserTest.resource("full-dump/pagemap-21384.json")));

        // pagemap-shmem-32: the whole of D, offsets from 0, PE_PRESENT only
        List<Entry> shmem = entries(SmapsParserTest.resource("full-dump/pagemap-shmem-32.json"));
        MemoryRegion d = regions.stream().filter(r -> r.inode() == 32).findFirst().orElseThrow();
        RegionDecision dd = full.decide(d);
        assertEquals(Action.DUMP, dd.action());
        assertTrue(CriuRegionPolicies.sharedAnonymous(d));
        assertEquals(PageSelection.PRESENT_NOT_ZERO, dd.pages());
        assertEquals(List.of(new Entry(d.offset(), d.pages(), PageFlags.PE_PRESENT | (dd.lazy() ? PageFlags.PE_LAZY : 0))),
                shmem);

        // the exact list of dumped VMAs, by start address
        List<Long> dumped = regions.stream().filter(r -> full.decide(r).dumped()).map(MemoryRegion::start).toList();
        assertEquals(List.of(0x400000L, 0x401000L, 0x479000L, 0x4a0000L, 0x4a4000L, 0x4a7000L, 0x1b2c4000L,
                0x7fec10976000L, 0x7fec1097e000L, 0x7fec10986000L, 0x7fec10996000L, 0x7fec109fc000L,
                0x7ffc5bb70000L), dumped);
    }

    @Test
    void preDumpSelectsWhatCriuPreDumped() throws Exception {
        List<MemoryRegion> regions = Smaps.parse(SmapsParserTest.resource("smaps.txt"));
        RegionPolicy pre = RegionPolicy.criuPreDump();
        List<Entry> criu = entries(SmapsParserTest.resource("pre-dump-1/pagemap-21384.json"));
        checkTaskPagemap(pre, regions, criu);
        MemoryRegion c = regionOf(regions, 0x7fec10986000L);
        assertEquals(RegionDecision.skip("PROT_NONE: not readable in a read-mode pre-dump"), pre.decide(c));
        assertTrue(criu.stream().noneMatch(e -> c.contains(e.vaddr())));
        // criu-formats.md §3 puts shared anonymous memory in pre-dumps too (CRIU 4.2 on this kernel, without
        // soft-dirty, sent no shmem pagemap in pre-dump-1: a deliberate superset, the pages are valid data)
        assertTrue(pre.decide(regionOf(regions, 0x7fec1097e000L)).dumped());
    }

    @Test
    void decisionsAndReasonsPerKindOfVma() throws Exception {
        List<MemoryRegion> regions = Smaps.parse(SmapsParserTest.resource("smaps.txt"));
        RegionPolicy full = RegionPolicy.criuFullDump();
        RegionPolicy pre = RegionPolicy.criuPreDump();

        MemoryRegion text = regionOf(regions, 0x401000L);
        assertEquals(RegionDecision.dump("private file mapping: only pages copied on write",
                ReadVia.PROCESS_VM_READV, PageSelection.PRESENT_NOT_ZERO_NOT_FILE, false), full.decide(text));
        MemoryRegion heap = regionOf(regions, 0x1b2c4000L);
        assertEquals(RegionDecision.dump("private anonymous memory", ReadVia.PROCESS_VM_READV,
                PageSelection.PRESENT_NOT_ZERO, true), full.decide(heap));
        MemoryRegion c = regionOf(regions, 0x7fec10986000L);
        RegionDecision cFull = full.decide(c);
        assertEquals(ReadVia.PROC_PID_MEM, cFull.via());
        assertTrue(cFull.lazy());
        assertTrue(cFull.reason().contains("PROT_NONE"), cFull.reason());
        MemoryRegion vdso = regionOf(regions, 0x7fec109fc000L);
        for (RegionPolicy p : List.of(full, pre)) {
            assertEquals(RegionDecision.dump("[vdso]: every page, always", ReadVia.PROCESS_VM_READV, PageSelection.ALL,
                    false), p.decide(vdso));
            assertEquals(RegionDecision.skip("[vvar]: kernel data, never dumped"), p.decide(regionOf(regions, 0x7fec109f6000L)));
            assertEquals(RegionDecision.skip("[vvar_vclock]: kernel data, never dumped"),
                    p.decide(regionOf(regions, 0x7fec109fa000L)));
            assertEquals(Action.SKIP, p.decide(regions.get(regions.size() - 1)).action(), "[vsyscall]");
        }
    }

    @Test
    void craftedVmas() {
        String text = """
                10000000-10001000 rw-s 00000000 08:01 77                                 /var/data.bin
                VmFlags: rd wr sh mr mw me
                10001000-10002000 rw-s 00000000 00:06 5                                  /dev/fb0
                VmFlags: rd wr sh mr mw me io pf dd
                10200000-10400000 rw-p 00000000 00:0f 1234                               /anon_hugepage (deleted)
                VmFlags: rd wr mr mw me ht
                10400000-10600000 rw-s 00000000 00:0f 1235                               /anon_hugepage (deleted)
                VmFlags: rd wr sh mr mw me ht
                10600000-10601000 r--p 00000000 08:01 78                                 /usr/lib/x.so
                VmFlags: rd mr mw me
                10601000-10602000 ---p 00000000 08:01 78                                 /usr/lib/x.so
                VmFlags: mr mw me
                10602000-10603000 rw-p 00000000 00:05 6                                  /dev/zero
                VmFlags: rd wr mr mw me
                10603000-10604000 rw-s 00000000 00:01 99                                 /SYSV00001234 (deleted)
                VmFlags: rd wr sh mr mw me
                """;
        List<MemoryRegion> r = Smaps.parse(text);
        RegionPolicy full = RegionPolicy.criuFullDump();
        RegionPolicy pre = RegionPolicy.criuPreDump();

        assertEquals(RegionDecision.skip("shared file mapping: the file holds the data"), full.decide(r.get(0)));
        RegionDecision device = full.decide(r.get(1));
        assertEquals(Action.FAIL, device.action());
        assertTrue(device.reason().startsWith("device or PFN mapping (VmFlags io/pf)"), device.reason());
        assertEquals(Action.FAIL, pre.decide(r.get(1)).action());

        // hugetlb: full dump yes (private: anonymous, lazy; shared: its shmem pagemap), pre-dump skips
        assertEquals(RegionDecision.dump("private anonymous memory", ReadVia.PROCESS_VM_READV,
                PageSelection.PRESENT_NOT_ZERO, true), full.decide(r.get(2)));
        assertEquals(RegionDecision.skip("hugetlb: not dumped by a read-mode pre-dump"), pre.decide(r.get(2)));
        assertTrue(CriuRegionPolicies.sharedAnonymous(r.get(3)));
        assertEquals(PageSelection.PRESENT_NOT_ZERO, full.decide(r.get(3)).pages());
        assertEquals(Action.SKIP, pre.decide(r.get(3)).action());

        assertEquals(PageSelection.PRESENT_NOT_ZERO_NOT_FILE, full.decide(r.get(4)).pages());
        // a PROT_NONE piece of a library: full dump via /proc/PID/mem, pre-dump skips
        assertEquals(ReadVia.PROC_PID_MEM, full.decide(r.get(5)).via());
        assertEquals(PageSelection.PRESENT_NOT_ZERO_NOT_FILE, full.decide(r.get(5)).pages());
        assertEquals(RegionDecision.skip("PROT_NONE: not readable in a read-mode pre-dump"), pre.decide(r.get(5)));
        // MAP_PRIVATE of /dev/zero is anonymous memory
        assertEquals(RegionDecision.dump("private anonymous memory", ReadVia.PROCESS_VM_READV,
                PageSelection.PRESENT_NOT_ZERO, true), full.decide(r.get(6)));
        // SysV shm is shared anonymous memory
        assertEquals(RegionDecision.dump("shared anonymous memory: into its shmem pagemap", ReadVia.PROCESS_VM_READV,
                PageSelection.PRESENT_NOT_ZERO, false), pre.decide(r.get(7)));
    }
}
