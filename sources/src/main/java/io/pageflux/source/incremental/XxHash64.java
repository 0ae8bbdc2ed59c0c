package io.pageflux.source.incremental;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * xxHash64 (Yann Collet's XXH64, the reference algorithm, written from its specification): a fast
 * non-cryptographic 64-bit hash. pageflux keeps one per dumped page to find pages that changed since the
 * previous iteration on kernels without soft-dirty bits.
 *
 * <p>Collisions: two different pages hash equal with probability 2<sup>-64</sup>, so a changed page is
 * missed (left as a PE_PARENT hole with stale bytes) about once in 10<sup>19</sup> changed pages. The
 * hash is not cryptographic: a target that crafts collisions on purpose could hide a change;
 * {@code pageflux verify} compares bytes and would catch it.
 */
public final class XxHash64 {

    private static final long P1 = 0x9E3779B185EBCA87L;
    private static final long P2 = 0xC2B2AE3D27D4EB4FL;
    private static final long P3 = 0x165667B19E3779F9L;
    private static final long P4 = 0x85EBCA77C2B2AE63L;
    private static final long P5 = 0x27D4EB2F165667C5L;

    private XxHash64() {
    }

    /** XXH64 of a whole byte array. */
    public static long hash(byte[] bytes, long seed) {
        return hash(ByteBuffer.wrap(bytes), 0, bytes.length, seed);
    }

    /**
     * XXH64 of {@code length} bytes of {@code buffer} from absolute index {@code offset}; the buffer's
     * position, limit and byte order are not used or changed. Direct buffers are read in place.
     */
    public static long hash(ByteBuffer buffer, int offset, int length, long seed) {
        if (offset < 0 || length < 0 || offset + length > buffer.capacity()) {
            throw new IndexOutOfBoundsException("offset=" + offset + " length=" + length + " capacity="
                    + buffer.capacity());
        }
        boolean swap = buffer.order() != ByteOrder.LITTLE_ENDIAN;
        int p = offset;
        int end = offset + length;
        long h;
        if (length >= 32) {
            long v1 = seed + P1 + P2;
            long v2 = seed + P2;
            long v3 = seed;
            long v4 = seed - P1;
            int limit = end - 32;
            do {
                v1 = round(v1, read64(buffer, p, swap));
                v2 = round(v2, read64(buffer, p + 8, swap));
                v3 = round(v3, read64(buffer, p + 16, swap));
                v4 = round(v4, read64(buffer, p + 24, swap));
                p += 32;
            } while (p <= limit);
            h = Long.rotateLeft(v1, 1) + Long.rotateLeft(v2, 7) + Long.rotateLeft(v3, 12) + Long.rotateLeft(v4, 18);
            h = merge(h, v1);
            h = merge(h, v2);
            h = merge(h, v3);
            h = merge(h, v4);
        } else {
            h = seed + P5;
        }
        h += length;
        while (p + 8 <= end) {
            h ^= round(0, read64(buffer, p, swap));
            h = Long.rotateLeft(h, 27) * P1 + P4;
            p += 8;
        }
        if (p + 4 <= end) {
            int k = buffer.getInt(p);
            h ^= ((swap ? Integer.reverseBytes(k) : k) & 0xFFFF_FFFFL) * P1;
            h = Long.rotateLeft(h, 23) * P2 + P3;
            p += 4;
        }
        while (p < end) {
            h ^= (buffer.get(p) & 0xFFL) * P5;
            h = Long.rotateLeft(h, 11) * P1;
            p++;
        }
        h ^= h >>> 33;
        h *= P2;
        h ^= h >>> 29;
        h *= P3;
        h ^= h >>> 32;
        return h;
    }

    private static long read64(ByteBuffer b, int index, boolean swap) {
        long v = b.getLong(index);
        return swap ? Long.reverseBytes(v) : v;
    }

    private static long round(long acc, long input) {
        acc += input * P2;
        acc = Long.rotateLeft(acc, 31);
        return acc * P1;
    }

    private static long merge(long acc, long v) {
        acc ^= round(0, v);
        return acc * P1 + P4;
    }
}
