package io.pageflux.sink.compress;

import io.pageflux.source.incremental.XxHash64;
import java.nio.ByteBuffer;
import java.util.zip.CRC32C;

/**
 * The two checksums of pageflux's formats: xxHash64 (seed 0; lz4-java's native implementation through
 * {@link XxHash64}, as the page digests use it) over raw page bytes and indexes, CRC32C (the JDK's,
 * hardware-accelerated) over headers and stored payloads. Both read {@code buffer} from position to limit and leave the position unchanged.
 */
public final class Checksums {

    private Checksums() {
    }

    public static long xxhash64(ByteBuffer buffer) {
        return XxHash64.hash(buffer, buffer.position(), buffer.remaining(), 0L);
    }

    public static int crc32c(ByteBuffer buffer) {
        CRC32C crc = new CRC32C();
        crc.update(buffer.duplicate());
        return (int) crc.getValue();
    }

    /** CRC32C of {@code buffer[from, to)} (absolute indexes). */
    public static int crc32c(ByteBuffer buffer, int from, int to) {
        return crc32c(buffer.duplicate().limit(to).position(from));
    }

    public static String hex(long value) {
        return String.format("0x%016x", value);
    }

    public static String hex(int value) {
        return String.format("0x%08x", value);
    }
}
