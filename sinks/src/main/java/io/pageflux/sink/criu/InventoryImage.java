package io.pageflux.sink.criu;

import io.pageflux.sink.criu.proto.InventoryProtos.InventoryEntry;
import java.nio.file.Path;
import java.util.OptionalInt;
import java.util.OptionalLong;

/**
 * An {@code inventory.img} as read by {@link ImageDirectory}. Only the fields a pre-dump writes
 * are decoded; a full dump's other fields are kept as unknown fields of {@link #message()}.
 *
 * @param file        the file
 * @param imgVersion  0 in a pre-dump (and in every inventory pageflux writes), 2 in a CRIU full dump
 * @param dumpUptime  microseconds since boot at dump time, if present
 * @param preDumpMode 1 = splice, 2 = read, if present
 * @param message     the decoded message
 */
public record InventoryImage(Path file, int imgVersion, OptionalLong dumpUptime, OptionalInt preDumpMode,
                             InventoryEntry message) {

    static InventoryImage of(Path file, InventoryEntry e) {
        return new InventoryImage(file, e.getImgVersion(),
                e.hasDumpUptime() ? OptionalLong.of(e.getDumpUptime()) : OptionalLong.empty(),
                e.hasPreDumpMode() ? OptionalInt.of(e.getPreDumpMode()) : OptionalInt.empty(), e);
    }
}
