package io.pageflux.source;

import io.pageflux.source.RegionDecision.PageSelection;
import io.pageflux.source.RegionDecision.ReadVia;

import java.util.Set;

/**
 * The CRIU presets behind {@link RegionPolicy#criuFullDump()} and {@link RegionPolicy#criuPreDump()}
 * (criu-formats.md §3). Rules are tried in this order, the first that matches decides:
 * <ol>
 *   <li>kernel pages ({@code [vvar]}, {@code [vvar_vclock]}, {@code [vsyscall]}, {@code [uprobes]},
 *       {@code [vectors]}): skipped — they carry {@code io pf} VmFlags too, so this comes before rule 2;</li>
 *   <li>{@code io} or {@code pf} in VmFlags (device / PFN mappings): the dump fails;</li>
 *   <li>{@code [vdso]}: every page, not lazy;</li>
 *   <li>hugetlb ({@code ht}): skipped by the pre-dump, otherwise classified like any other VMA;</li>
 *   <li>shared file mappings: skipped (the file holds the data);</li>
 *   <li>no read permission: skipped by the pre-dump; the full dump reads it through {@code /proc/PID/mem};</li>
 *   <li>shared anonymous memory: dumped into its shmem pagemap, not lazy;</li>
 *   <li>private file mappings: only pages copied on write, not lazy;</li>
 *   <li>private anonymous memory ({@code [heap]}, {@code [stack]}, {@code [anon:...]}, none): lazy.</li>
 * </ol>
 * The lazy flags match CRIU 4.2's output (the vectors' pagemap: file pages and {@code [vdso]} PE_PRESENT,
 * heap, stack and other anonymous pages PE_LAZY|PE_PRESENT, the shmem pagemap PE_PRESENT).
 */
final class CriuRegionPolicies {

    /** Kernel-provided pages that no dump contains. */
    private static final Set<String> KERNEL_PAGES = Set.of("[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]",
            "[vectors]");

    static final String SHARED_FILE = "shared file mapping: the file holds the data";
    static final String DEVICE_OR_PFN = "device or PFN mapping (VmFlags io/pf): its memory cannot be read back safely";
    static final String VDSO = "[vdso]: every page, always";
    static final String HUGETLB_PRE_DUMP = "hugetlb: not dumped by a read-mode pre-dump";
    static final String PROT_NONE_PRE_DUMP = "PROT_NONE: not readable in a read-mode pre-dump";
    static final String PROT_NONE_FULL = "not readable (PROT_NONE): read through /proc/PID/mem";
    static final String SHARED_ANON = "shared anonymous memory: into its shmem pagemap";
    static final String PRIVATE_FILE = "private file mapping: only pages copied on write";
    static final String PRIVATE_ANON = "private anonymous memory";

    static final RegionPolicy FULL_DUMP = region -> decide(region, false);
    static final RegionPolicy PRE_DUMP = region -> decide(region, true);

    private CriuRegionPolicies() {
    }

    static RegionDecision decide(MemoryRegion region, boolean preDump) {
        String path = region.path();
        if (KERNEL_PAGES.contains(path)) {
            return RegionDecision.skip(path + ": kernel data, never dumped");
        }
        if (region.hasVmFlag("io") || region.hasVmFlag("pf")) {
            return RegionDecision.fail(DEVICE_OR_PFN);
        }
        if (path.equals("[vdso]")) {
            return RegionDecision.dump(VDSO, ReadVia.PROCESS_VM_READV, PageSelection.ALL, false);
        }
        if (preDump && region.hasVmFlag("ht")) {
            return RegionDecision.skip(HUGETLB_PRE_DUMP);
        }
        boolean sharedAnon = sharedAnonymous(region);
        if (region.shared() && !sharedAnon) {
            return RegionDecision.skip(SHARED_FILE);
        }
        ReadVia via = ReadVia.PROCESS_VM_READV;
        if (!region.readable()) {
            if (preDump) {
                return RegionDecision.skip(PROT_NONE_PRE_DUMP);
            }
            via = ReadVia.PROC_PID_MEM;
        }
        if (sharedAnon) {
            return RegionDecision.dump(reason(SHARED_ANON, via), via, PageSelection.PRESENT_NOT_ZERO, false);
        }
        if (privateFile(region)) {
            return RegionDecision.dump(reason(PRIVATE_FILE, via), via, PageSelection.PRESENT_NOT_ZERO_NOT_FILE, false);
        }
        return RegionDecision.dump(reason(PRIVATE_ANON, via), via, PageSelection.PRESENT_NOT_ZERO, true);
    }

    private static String reason(String what, ReadVia via) {
        return via == ReadVia.PROC_PID_MEM ? what + "; " + PROT_NONE_FULL : what;
    }

    /**
     * Shared memory with no file behind it: {@code /dev/zero (deleted)} (MAP_SHARED|MAP_ANONYMOUS), SysV shm,
     * shared anonymous hugetlb ({@code /anon_hugepage (deleted)}) and named shared anonymous memory
     * ({@code [anon_shmem:name]}). Its pages go to {@code pagemap-shmem-<inode>}.
     */
    static boolean sharedAnonymous(MemoryRegion region) {
        if (!region.shared() || region.inode() == 0) {
            return false;
        }
        String path = region.path();
        return region.sharedAnonymous() || path.startsWith("[anon_shmem:")
                || (region.hasVmFlag("ht") && path.equals("/anon_hugepage (deleted)"));
    }

    /**
     * A private mapping of a real file. Private mappings of {@code /dev/zero} and private anonymous hugetlb
     * ({@code /anon_hugepage (deleted)}) are anonymous memory to the kernel (and to CRIU); pseudo paths
     * ({@code [heap]}, {@code [anon:x]}) have no file.
     */
    private static boolean privateFile(MemoryRegion region) {
        String path = region.path();
        return region.inode() != 0 && !region.pseudoPath() && !path.equals("/dev/zero")
                && !path.equals("/anon_hugepage (deleted)");
    }
}
