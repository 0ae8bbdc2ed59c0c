package io.pageflux.source;

/** CRIU's pagemap entry flags (criu-formats.md §1.3). */
public final class PageFlags {

    /** The pages are in the parent image directory (a hole). */
    public static final int PE_PARENT = 1;
    /** The pages may be restored lazily. */
    public static final int PE_LAZY = 2;
    /** The pages' bytes follow in the pages file / on the wire. */
    public static final int PE_PRESENT = 4;

    private PageFlags() {
    }

    public static boolean has(int flags, int flag) {
        return (flags & flag) != 0;
    }

    /** {@code PE_LAZY | PE_PRESENT}, the spelling {@code crit} uses. */
    public static String describe(int flags) {
        StringBuilder sb = new StringBuilder();
        if (has(flags, PE_PARENT)) {
            sb.append("PE_PARENT");
        }
        if (has(flags, PE_LAZY)) {
            sb.append(sb.isEmpty() ? "" : " | ").append("PE_LAZY");
        }
        if (has(flags, PE_PRESENT)) {
            sb.append(sb.isEmpty() ? "" : " | ").append("PE_PRESENT");
        }
        int unknown = flags & ~(PE_PARENT | PE_LAZY | PE_PRESENT);
        if (unknown != 0) {
            sb.append(sb.isEmpty() ? "" : " | ").append("0x").append(Integer.toHexString(unknown));
        }
        return sb.isEmpty() ? "0" : sb.toString();
    }
}
