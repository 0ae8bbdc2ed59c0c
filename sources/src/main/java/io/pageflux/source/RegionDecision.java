package io.pageflux.source;

/**
 * What a {@link RegionPolicy} says about one region.
 *
 * @param action   dump it, skip it, or fail the dump because it cannot be dumped safely
 * @param reason   why (always set; shown in reports, e.g. {@code "shared file mapping"})
 * @param via      how its pages are read when dumped
 * @param pages    which of its pages are dumped
 * @param lazy     whether the dumped runs carry {@link PageFlags#PE_LAZY}
 */
public record RegionDecision(Action action, String reason, ReadVia via, PageSelection pages, boolean lazy) {

    public enum Action { DUMP, SKIP, FAIL }

    /** How the bytes are read. */
    public enum ReadVia {
        /** {@code process_vm_readv(2)}: fast, but honours the target's page protection. */
        PROCESS_VM_READV,
        /** {@code /proc/PID/mem}: ignores page protection (PROT_NONE regions). */
        PROC_PID_MEM
    }

    /** Which pages of a dumped region are selected (criu-formats.md §3). */
    public enum PageSelection {
        /** Every page of the region ({@code [vdso]}). */
        ALL,
        /** Present or swapped, not the shared zero page. */
        PRESENT_NOT_ZERO,
        /** Present or swapped, not the zero page, and not still the file's own page (private file mappings). */
        PRESENT_NOT_ZERO_NOT_FILE
    }

    public static RegionDecision dump(String reason, ReadVia via, PageSelection pages, boolean lazy) {
        return new RegionDecision(Action.DUMP, reason, via, pages, lazy);
    }

    public static RegionDecision skip(String reason) {
        return new RegionDecision(Action.SKIP, reason, ReadVia.PROCESS_VM_READV, PageSelection.ALL, false);
    }

    public static RegionDecision fail(String reason) {
        return new RegionDecision(Action.FAIL, reason, ReadVia.PROCESS_VM_READV, PageSelection.ALL, false);
    }

    public boolean dumped() {
        return action == Action.DUMP;
    }
}
