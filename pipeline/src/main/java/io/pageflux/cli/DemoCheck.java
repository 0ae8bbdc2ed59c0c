package io.pageflux.cli;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The demo's proof that a dump is right: every page in the image directory is compared with the
 * same page of the live process (read again through {@code /proc/PID/mem}, which is independent
 * of the {@code process_vm_readv} path the dump used), and the sample's regions A–E must be in
 * the dump exactly as CRIU's full-dump rules say, with the bytes the sample wrote.
 */
final class DemoCheck {

    private static final int PAGE = PageRun.PAGE_SIZE;
    /** Problems listed in full; beyond this only counted. */
    private static final int PROBLEMS_SHOWN = 10;

    /** Where each region's pages are expected and how many of them. */
    private static final Map<Region, String> RULES = new EnumMap<>(Map.of(
            Region.A, "all pages",
            Region.B, "even pages only (odd pages map the shared zero page)",
            Region.C, "all pages (PROT_NONE, read through /proc/PID/mem)",
            Region.D, "all pages, in pagemap-shmem-<inode>.img at offsets 0..",
            Region.E, "no page (never touched)"));

    final List<String> problems = new ArrayList<>();
    final List<String> lines = new ArrayList<>();
    private int problemCount;
    long pagesCompared;

    /**
     * @param images  the dump, already verified
     * @param sample  the live sample process
     * @param regions the sample's regions (to place shared-anonymous offsets in its address space)
     */
    static DemoCheck run(ImageDirectory images, SampleProcess sample, List<MemoryRegion> regions) throws IOException {
        DemoCheck check = new DemoCheck();
        check.check(images, sample, regions);
        return check;
    }

    boolean ok() {
        return problemCount == 0;
    }

    private void problem(String text) {
        problemCount++;
        if (problems.size() < PROBLEMS_SHOWN) {
            problems.add(text);
        }
    }

    private void check(ImageDirectory images, SampleProcess sample, List<MemoryRegion> regions) throws IOException {
        int pid = sample.pid();
        // live address -> dumped page bytes, and which pagemap each came from
        Map<Long, byte[]> dumped = new HashMap<>();
        Map<Long, PagemapId> from = new HashMap<>();
        try (FileChannel mem = FileChannel.open(Path.of("/proc", Integer.toString(pid), "mem"), StandardOpenOption.READ)) {
            for (PagemapImage pm : images.pagemaps()) {
                for (PagemapImage.Entry e : pm.entries()) {
                    if (!e.present()) {
                        continue;
                    }
                    ByteBuffer bytes = images.readPages(pm, e);
                    for (long p = 0; p < e.nrPages(); p++) {
                        long vaddr = e.vaddr() + p * PAGE;
                        long address = liveAddress(pm.id(), vaddr, regions);
                        byte[] page = new byte[PAGE];
                        bytes.get(page);
                        if (address < 0) {
                            problem(String.format(Locale.ROOT, "%s vaddr=0x%x: no shared mapping of object %d in pid=%d",
                                    pm.file().getFileName(), vaddr, pm.id().id(), pid));
                            continue;
                        }
                        byte[] live = readLive(mem, address);
                        pagesCompared++;
                        if (live == null) {
                            problem(String.format(Locale.ROOT, "address=0x%x: dumped but no longer readable in pid=%d",
                                    address, pid));
                        } else if (!Arrays.equals(page, live)) {
                            problem(String.format(Locale.ROOT, "address=0x%x (%s vaddr=0x%x): dumped bytes differ from "
                                    + "the live process at offset %d", address, pm.file().getFileName(), vaddr,
                                    Arrays.mismatch(page, live)));
                        }
                        if (dumped.put(address, page) != null) {
                            problem(String.format(Locale.ROOT, "address=0x%x is in the dump twice", address));
                        }
                        from.put(address, pm.id());
                    }
                }
            }
        }
        lines.add(String.format(Locale.ROOT, "%d dumped pages compared with pid=%d's live memory (/proc/%d/mem): %s",
                pagesCompared, pid, pid, problemCount == 0 ? "all equal" : problemCount + " problems"));

        for (Region r : List.of(Region.A, Region.B, Region.C, Region.D, Region.E)) {
            long base = sample.address(r);
            int expected = 0;
            int found = 0;
            int before = problemCount;
            for (int p = 0; p < r.pages(); p++) {
                long address = base + (long) p * PAGE;
                boolean shouldBeThere = switch (r) {
                    case A, C, D -> true;
                    case B -> p % 2 == 0;
                    default -> false;
                };
                byte[] page = dumped.get(address);
                if (shouldBeThere) {
                    expected++;
                }
                if (page != null) {
                    found++;
                }
                if (shouldBeThere && page == null) {
                    problem(String.format(Locale.ROOT, "region %s page %d address=0x%x is missing from the dump", r, p,
                            address));
                } else if (!shouldBeThere && page != null) {
                    problem(String.format(Locale.ROOT, "region %s page %d address=0x%x is in the dump but should not be",
                            r, p, address));
                } else if (page != null) {
                    if (!Arrays.equals(page, SampleProcess.expectedPage(r, p))) {
                        problem(String.format(Locale.ROOT, "region %s page %d address=0x%x: bytes differ from the "
                                + "sample's pattern", r, p, address));
                    }
                    boolean shmem = from.get(address).kind() == PagemapId.Kind.SHMEM;
                    if (shmem != (r == Region.D)) {
                        problem(String.format(Locale.ROOT, "region %s page %d address=0x%x is in %s", r, p, address,
                                from.get(address)));
                    }
                }
            }
            String rule = RULES.get(r);
            if (r == Region.D && from.containsKey(base)) {
                rule = rule.replace("pagemap-shmem-<inode>.img", from.get(base).pagemapFileName());
            }
            lines.add(String.format(Locale.ROOT, "region %s: %2d of %2d pages dumped, expected %2d: %s%s", r, found,
                    r.pages(), expected, rule, problemCount == before ? " - OK" : " - WRONG"));
        }
    }

    /**
     * Task pagemaps hold addresses; shared-anonymous ones hold offsets inside the object, which
     * the sample maps at the region with that inode.
     */
    private static long liveAddress(PagemapId id, long vaddr, List<MemoryRegion> regions) {
        if (id.kind() == PagemapId.Kind.TASK) {
            return vaddr;
        }
        for (MemoryRegion r : regions) {
            if (r.sharedAnonymous() && r.inode() == id.id() && vaddr >= r.offset() && vaddr < r.offset() + r.size()) {
                return r.start() + (vaddr - r.offset());
            }
        }
        return -1;
    }

    private static byte[] readLive(FileChannel mem, long address) {
        ByteBuffer buf = ByteBuffer.allocate(PAGE);
        try {
            while (buf.hasRemaining()) {
                if (mem.read(buf, address + buf.position()) <= 0) {
                    return null;
                }
            }
        } catch (IOException e) {
            return null;
        }
        return buf.array();
    }
}
