package io.pageflux.sink.criu;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.criu.proto.InventoryProtos.InventoryEntry;
import io.pageflux.sink.criu.proto.InventoryProtos.PluginsEntry;
import io.pageflux.source.MemoryRegion;
import io.pageflux.source.PagemapId;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.Optional;
import java.util.Set;

/**
 * The directory-level choices pageflux makes for a {@link DumpContext} — inventory, pagemap
 * (pages_id) order, parent link — in one place, so that every writer applies them the same way:
 * {@link CriuImageSink}, the compressed image sink, the stream format and its unpacker, and the
 * page-server client (whose server numbers pagemaps in the order they are opened). Unpacking a
 * compressed dump or a stream thus gives the directory {@code CriuImageSink} writes, byte for byte.
 */
public final class CriuLayout {

    /** CRIU's read-mode pre-dump ({@code pre_dump_mode} in the inventory). */
    public static final int PRE_DUMP_MODE_READ = 2;

    private CriuLayout() {
    }

    /**
     * The pre-dump inventory ({@code img_version 0}, {@code dump_uptime}, {@code pre_dump_mode 2},
     * empty {@code plugins_entry}), written for full dumps too: see {@link CriuImageSink}.
     */
    public static InventoryEntry inventory(long dumpUptimeMicros) {
        return InventoryEntry.newBuilder()
                .setImgVersion(0)
                .setDumpUptime(dumpUptimeMicros)
                .setPreDumpMode(PRE_DUMP_MODE_READ)
                .setPluginsEntry(PluginsEntry.getDefaultInstance())
                .build();
    }

    /**
     * The pagemaps opened before the first chunk, in CRIU's pages_id order: in a full dump the
     * shared anonymous objects of the context's regions in address order, then the task; in a
     * pre-dump only the task (CRIU's pre-dump writes no shmem pagemaps).
     */
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

    /**
     * Directory writer options for a dump: the inventory, the first pages_id, force, and a
     * {@code parent} link relative to {@code dir} when there is a parent.
     */
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

    /**
     * Opens a directory writer for {@code context} and its pagemaps in {@link #pagemapOrder} (the
     * writer is aborted if that fails).
     */
    public static ImageDirectoryWriter open(Path dir, DumpContext context, ImageDirectoryWriter.Options options) {
        ImageDirectoryWriter writer = ImageDirectoryWriter.create(dir, options);
        try {
            for (PagemapId id : pagemapOrder(context)) {
                writer.openPagemap(id);
            }
        } catch (RuntimeException e) {
            writer.abort();
            throw e;
        }
        return writer;
    }
}
