package io.pageflux.source;

import java.util.Map;
import java.util.Set;

/**
 * One VMA of the target, as {@code /proc/PID/smaps} shows it.
 *
 * @param start     first address
 * @param end       address after the last byte
 * @param perms     the four permission characters, e.g. {@code rw-p}, {@code r-xs}
 * @param offset    offset into the mapped file (or object)
 * @param device    {@code major:minor} in hex, as printed
 * @param inode     inode of the mapped file or shared object, 0 for anonymous memory
 * @param path      the path column: a file, {@code [heap]}, {@code [anon:name]}, {@code /dev/zero (deleted)},
 *                  or the empty string
 * @param vmFlags   the two-letter {@code VmFlags} (e.g. {@code rd wr mr io pf})
 * @param fields    every other smaps field by name, values in kB as printed (e.g. {@code Rss})
 */
public record MemoryRegion(long start, long end, String perms, long offset, String device, long inode,
                           String path, Set<String> vmFlags, Map<String, Long> fields) {

    public MemoryRegion {
        if (end <= start) {
            throw new IllegalArgumentException(String.format("empty region 0x%x-0x%x", start, end));
        }
        if (perms.length() != 4) {
            throw new IllegalArgumentException("perms must be 4 characters like rw-p: '" + perms + "'");
        }
        vmFlags = Set.copyOf(vmFlags);
        fields = Map.copyOf(fields);
    }

    public long size() {
        return end - start;
    }

    public long pages() {
        return size() / PageRun.PAGE_SIZE;
    }

    public boolean readable() {
        return perms.charAt(0) == 'r';
    }

    public boolean writable() {
        return perms.charAt(1) == 'w';
    }

    public boolean executable() {
        return perms.charAt(2) == 'x';
    }

    public boolean shared() {
        return perms.charAt(3) == 's';
    }

    /** No access at all ({@code ---p}). */
    public boolean protNone() {
        return !readable() && !writable() && !executable();
    }

    /** Pseudo-files like {@code [heap]}, {@code [stack]}, {@code [vdso]}, {@code [anon:name]}. */
    public boolean pseudoPath() {
        return path.startsWith("[") && path.endsWith("]");
    }

    /** Not backed by a file: no path, a pseudo path, or a shared anonymous object. */
    public boolean anonymous() {
        return inode == 0 || sharedAnonymous();
    }

    /**
     * Shared anonymous memory ({@code mmap(MAP_SHARED|MAP_ANONYMOUS)}, which the kernel shows as
     * {@code /dev/zero (deleted)}, or SysV shm {@code /SYSV...}).
     */
    public boolean sharedAnonymous() {
        return shared() && inode != 0 && (path.equals("/dev/zero (deleted)") || path.startsWith("/SYSV"));
    }

    public boolean hasVmFlag(String flag) {
        return vmFlags.contains(flag);
    }

    public boolean contains(long address) {
        return address >= start && address < end;
    }

    @Override
    public String toString() {
        return String.format("%x-%x %s %08x %s %d %s", start, end, perms, offset, device, inode, path);
    }
}
