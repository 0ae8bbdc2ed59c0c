package io.pageflux.source;

/** How a {@link PageScan} learns which pages are present. */
public enum ScannerKind {
    /** The {@code PAGEMAP_SCAN} ioctl (Linux 6.7+), falling back to {@link #PAGEMAP_FILE} where it is missing. */
    AUTO,
    /** Only the {@code PAGEMAP_SCAN} ioctl; fails where the kernel lacks it. */
    PAGEMAP_SCAN,
    /** Reading one u64 per page from {@code /proc/PID/pagemap}. */
    PAGEMAP_FILE
}
