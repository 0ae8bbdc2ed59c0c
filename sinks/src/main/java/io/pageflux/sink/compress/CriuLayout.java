package io.pageflux.sink.compress;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.criu.CriuImageSink;
import io.pageflux.sink.criu.ImageDirectoryWriter;
import io.pageflux.sink.criu.proto.InventoryProtos.InventoryEntry;
import io.pageflux.sink.criu.proto.InventoryProtos.PluginsEntry;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.PagemapId;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.Optional;
import java.util.Set;

/**
 * The directory-level choices {@link CriuImageSink} makes for a {@link DumpContext} — inventory,
 * pagemap (pages_id) order, parent link — applied the same way by the compressed and stream
 * formats, so that unpacking gives byte-identical directories. Mirrors {@code CriuImageSink}'s
 * package-private helpers of the same names (the round-trip tests compare the results).
 */
public final class CriuLayout {

    private CriuLayout() {
    }

    /** The pre-dump inventory pageflux writes for every dump (see {@link CriuImageSink}). */
    public static InventoryEntry inventory(long dumpUptimeMicros) {
        return InventoryEntry.newBuilder()
                .setImgVersion(0)
                .setDumpUptime(dumpUptimeMicros)
                .setPreDumpMode(CriuImageSink.PRE_DUMP_MODE_READ)
                .setPluginsEntry(PluginsEntry.getDefaultInstance())
                .build();
    }

    /** Pagemaps opened before the first chunk, in CRIU's pages_id order (shmem objects first in a full dump). */
    public static Set<PagemapId> pagemapOrder(DumpContext context) {
        Set<PagemapId> ids = new LinkedHashSet<>();
        if (!context.preDump()) {
            for (MemoryRegion r : context.regions()) {
                if (r.sharedAnonymous()) {
                    ids.add(PagemapId.shmem(r.inode()));
                }
            }
        }
        ids.add(PagemapId.task(context.pid()));
        return ids;
    }

    /** Directory writer options: inventory, first pages_id, force, and a relative {@code parent} link. */
    public static ImageDirectoryWriter.Options writerOptions(Path dir, long dumpUptimeMicros, Optional<Path> parent,
                                                             long firstPagesId, boolean force) {
        ImageDirectoryWriter.Options o = ImageDirectoryWriter.Options.defaults()
                .withFirstPagesId(firstPagesId)
                .withForce(force)
                .withInventory(inventory(dumpUptimeMicros));
        if (parent.isPresent()) {
            Path self = dir.toAbsolutePath().normalize();
            o = o.withParentLink(self.relativize(parent.get().toAbsolutePath().normalize()));
        }
        return o;
    }
}
