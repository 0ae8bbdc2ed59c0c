package io.pageflux.sink;

import io.pageflux.source.MemoryRegion;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * What a sink knows about the dump besides the pages: whose memory it is and what kind of dump.
 *
 * @param pid              the pid the images are named after
 * @param regions          the target's regions at scan time
 * @param dumpUptimeMicros {@code /proc/uptime} at dump time in microseconds (inventory {@code dump_uptime})
 * @param preDump          a pre-dump (inventory {@code img_version = 0}, {@code pre_dump_mode = 2})
 * @param parent           the previous dump this one builds on, if any (PE_PARENT holes refer to it)
 */
public record DumpContext(int pid, List<MemoryRegion> regions, long dumpUptimeMicros, boolean preDump,
                          Optional<Path> parent) {

    public DumpContext {
        regions = List.copyOf(regions);
        Objects.requireNonNull(parent, "parent");
    }

    public static DumpContext of(int pid, List<MemoryRegion> regions, long dumpUptimeMicros) {
        return new DumpContext(pid, regions, dumpUptimeMicros, false, Optional.empty());
    }
}
