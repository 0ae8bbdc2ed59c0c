package io.pageflux.source.testing;

import io.pageflux.source.DataSize;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.PageRun;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * One mapping of a {@link SimulatedProcess}: where it is, how big, how many of its pages are
 * present, and the {@code /proc/PID/smaps} facts a {@link io.pageflux.source.RegionPolicy} looks
 * at. Immutable; {@code withX} returns a modified copy.
 *
 * <p>Which pages are present is computed from the process's seed, lazily, block by block (see
 * {@link #withBlockPages(int)}): a 4 TiB region costs nothing until it is read, and the same
 * seed always gives the same pages.
 */
public final class SimulatedRegion {

    /** Pages per presence block (2 MiB): at most one run of present pages starts in each block. */
    public static final int DEFAULT_BLOCK_PAGES = 512;

    private final long start;
    private final long size;
    private final double density;
    private final String perms;
    private final long offset;
    private final String device;
    private final long inode;
    private final String path;
    private final Set<String> vmFlags;
    private final int blockPages;

    private SimulatedRegion(long start, long size, double density, String perms, long offset, String device,
                            long inode, String path, Set<String> vmFlags, int blockPages) {
        if (start < 0 || start % PageRun.PAGE_SIZE != 0) {
            throw new IllegalArgumentException(String.format("region start must be page aligned: start=0x%x", start));
        }
        if (size <= 0 || size % PageRun.PAGE_SIZE != 0) {
            throw new IllegalArgumentException(String.format(
                    "region size must be a positive multiple of %d: start=0x%x size=%d", PageRun.PAGE_SIZE, start, size));
        }
        if (start + size < start) {
            throw new IllegalArgumentException(String.format("region wraps around: start=0x%x size=%d", start, size));
        }
        if (!(density >= 0.0 && density <= 1.0)) {
            throw new IllegalArgumentException(String.format(
                    "density must be between 0 and 1: start=0x%x density=%s", start, density));
        }
        if (blockPages < 1) {
            throw new IllegalArgumentException("blockPages must be at least 1: " + blockPages);
        }
        this.start = start;
        this.size = size;
        this.density = density;
        this.perms = perms;
        this.offset = offset;
        this.device = device;
        this.inode = inode;
        this.path = path;
        this.vmFlags = vmFlags == null ? null : Set.copyOf(vmFlags);
        this.blockPages = blockPages;
        // validates perms, path and the rest the way smaps data is validated
        toMemoryRegion(0);
    }

    /** Private anonymous memory ({@code rw-p}, no path), every page present. */
    public static SimulatedRegion anonymous(long start, DataSize size) {
        return new SimulatedRegion(start, size.bytes(), 1.0, "rw-p", 0, "00:00", 0, "", null, DEFAULT_BLOCK_PAGES);
    }

    /**
     * Shared anonymous memory ({@code mmap(MAP_SHARED|MAP_ANONYMOUS)}: {@code rw-s}, shown as
     * {@code /dev/zero (deleted)} with the shmem object's id as inode), every page present.
     */
    public static SimulatedRegion sharedAnonymous(long start, DataSize size, long shmid) {
        return new SimulatedRegion(start, size.bytes(), 1.0, "rw-s", 0, "00:01", shmid, "/dev/zero (deleted)", null,
                DEFAULT_BLOCK_PAGES);
    }

    /** A private file mapping ({@code r--p} of {@code path} at {@code fileOffset}), every page present. */
    public static SimulatedRegion file(long start, DataSize size, String path, long inode, long fileOffset) {
        return new SimulatedRegion(start, size.bytes(), 1.0, "r--p", fileOffset, "08:01", inode, path, null,
                DEFAULT_BLOCK_PAGES);
    }

    /** The fraction of pages present, 0 (none) to 1 (all): {@code 0.01} is 1% touched. */
    public SimulatedRegion withDensity(double density) {
        return new SimulatedRegion(start, size, density, perms, offset, device, inode, path, vmFlags, blockPages);
    }

    /** Permissions like {@code r--p}, {@code rw-s}, {@code ---p}. */
    public SimulatedRegion withPerms(String perms) {
        return new SimulatedRegion(start, size, density, perms, offset, device, inode, path, vmFlags, blockPages);
    }

    /** The smaps path column, e.g. {@code [heap]}, {@code [stack]}, {@code [anon:name]}. */
    public SimulatedRegion withPath(String path) {
        return new SimulatedRegion(start, size, density, perms, offset, device, inode, path, vmFlags, blockPages);
    }

    /** VmFlags to report instead of the ones derived from the permissions (e.g. add {@code io} or {@code dd}). */
    public SimulatedRegion withVmFlags(Set<String> vmFlags) {
        return new SimulatedRegion(start, size, density, perms, offset, device, inode, path, vmFlags, blockPages);
    }

    /**
     * The presence granularity: each block of this many pages holds at most one run of present
     * pages. Smaller blocks make sparse regions more fragmented (more, shorter runs).
     */
    public SimulatedRegion withBlockPages(int blockPages) {
        return new SimulatedRegion(start, size, density, perms, offset, device, inode, path, vmFlags, blockPages);
    }

    public long start() {
        return start;
    }

    public long end() {
        return start + size;
    }

    public long size() {
        return size;
    }

    public long pages() {
        return size / PageRun.PAGE_SIZE;
    }

    public double density() {
        return density;
    }

    public int blockPages() {
        return blockPages;
    }

    PagePresence presence(long seed) {
        return new PagePresence(seed, start, pages(), blockPages, density);
    }

    /** The smaps view, with {@code Rss} for {@code rssPages} present pages. */
    MemoryRegion toMemoryRegion(long rssPages) {
        Set<String> flags = vmFlags;
        if (flags == null) {
            flags = new LinkedHashSet<>();
            if (perms.length() == 4) {
                if (perms.charAt(0) == 'r') {
                    flags.add("rd");
                }
                if (perms.charAt(1) == 'w') {
                    flags.add("wr");
                }
                if (perms.charAt(2) == 'x') {
                    flags.add("ex");
                }
                if (perms.charAt(3) == 's') {
                    flags.add("sh");
                }
            }
            flags.add("mr");
            flags.add("mw");
            flags.add("me");
            if (inode == 0) {
                flags.add("ac");
            }
        }
        Map<String, Long> fields = Map.of("Size", size / 1024, "Rss", rssPages * (PageRun.PAGE_SIZE / 1024));
        return new MemoryRegion(start, start + size, perms, offset, device, inode, path, flags, fields);
    }

    @Override
    public String toString() {
        return String.format("SimulatedRegion[0x%x-0x%x %s %s density=%s]", start, start + size, perms, path, density);
    }
}
