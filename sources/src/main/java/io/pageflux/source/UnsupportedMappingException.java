package io.pageflux.source;

/** A region the policy says cannot be dumped safely (device or PFN mappings, as in CRIU). */
public class UnsupportedMappingException extends PagefluxException {

    private final int pid;
    private final MemoryRegion region;

    public UnsupportedMappingException(int pid, MemoryRegion region, String reason) {
        super(String.format("unsupported mapping: pid=%d region=%x-%x path='%s' reason=%s", pid, region.start(),
                region.end(), region.path(), reason));
        this.pid = pid;
        this.region = region;
    }

    public int pid() {
        return pid;
    }

    public MemoryRegion region() {
        return region;
    }
}
