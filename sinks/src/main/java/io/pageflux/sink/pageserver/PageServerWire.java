package io.pageflux.sink.pageserver;

import io.pageflux.source.PagemapId;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The CRIU page-server wire format, written down once (criu-formats.md §2).
 *
 * <pre>
 *  0               4               8                              16
 *  +---------------+---------------+-------------------------------+
 *  | cmd (u32)     | pad (u32) = 0 | nr_pages (u64)                |
 *  +---------------+---------------+-------------------------------+
 *  | vaddr (u64)                   | dst_id (u64) = id &lt;&lt; 8 | type  |
 *  +-------------------------------+-------------------------------+
 *  16                              24                             32
 *
 *  cmd = (flags &lt;&lt; 16) | op         all fields little-endian (host order on x86_64 / arm64)
 * </pre>
 *
 * Replies (server to client): OPEN2 → 1 byte has-parent; PARENT → 4-byte int has-parent;
 * CLOSE / FORCE_CLOSE → 4-byte int 0. Nothing else is answered. There is no hello, magic or version.
 */
final class PageServerWire {

    static final int HEADER_BYTES = 32;
    static final int OFF_CMD = 0;
    static final int OFF_PAD = 4;
    static final int OFF_NR_PAGES = 8;
    static final int OFF_VADDR = 16;
    static final int OFF_DST_ID = 24;

    static final int OP_ADD = 1;
    static final int OP_HOLE = 2;
    static final int OP_OPEN = 3;
    static final int OP_OPEN2 = 4;
    static final int OP_PARENT = 5;
    static final int OP_ADD_F = 6;
    static final int OP_GET = 7;
    /** Compared against the whole cmd word: CLOSE carries no flag bits. */
    static final int CMD_CLOSE = 0x1023;
    static final int CMD_FORCE_CLOSE = 0x1024;

    static final int OPEN2_REPLY_BYTES = 1;
    static final int PARENT_REPLY_BYTES = 4;
    static final int CLOSE_REPLY_BYTES = 4;

    /** dst_id type byte of a task pagemap (current numbering). */
    static final int TYPE_TASK = 1;
    /** dst_id type byte of a shared-anonymous pagemap (current numbering). */
    static final int TYPE_SHMEM = 2;

    private PageServerWire() {
    }

    /** The name of an op for messages, e.g. {@code ADD_F}; unknown ops as {@code op=0x1234}. */
    static String opName(int cmd) {
        if (cmd == CMD_CLOSE) {
            return "CLOSE";
        }
        if (cmd == CMD_FORCE_CLOSE) {
            return "FORCE_CLOSE";
        }
        return switch (cmd & 0xffff) {
            case OP_ADD -> "ADD";
            case OP_HOLE -> "HOLE";
            case OP_OPEN -> "OPEN";
            case OP_OPEN2 -> "OPEN2";
            case OP_PARENT -> "PARENT";
            case OP_ADD_F -> "ADD_F";
            case OP_GET -> "GET";
            default -> "op=0x" + Integer.toHexString(cmd & 0xffff);
        };
    }

    /**
     * The pagemap a {@code dst_id} names, accepting the legacy type numbers CRIU still accepts
     * (10, 11, 16, 17 for tasks; 27, 28, 29, 32, 33, 34 for shared memory).
     *
     * @throws IllegalArgumentException for any other type byte or an id of 0
     */
    static PagemapId pagemapOf(long dstId) {
        int type = (int) (dstId & 0xff);
        long id = dstId >>> 8;
        PagemapId.Kind kind = switch (type) {
            case TYPE_TASK, 10, 11, 16, 17 -> PagemapId.Kind.TASK;
            case TYPE_SHMEM, 27, 28, 29, 32, 33, 34 -> PagemapId.Kind.SHMEM;
            default -> throw new IllegalArgumentException("dst_id=0x" + Long.toHexString(dstId) + " has type="
                    + type + ", which is neither a task (1) nor a shared-memory (2) pagemap");
        };
        if (id == 0) {
            throw new IllegalArgumentException("dst_id=0x" + Long.toHexString(dstId) + " names id 0");
        }
        return new PagemapId(kind, id);
    }

    /** Writes {@code header} at the buffer's position (little-endian), advancing it by 32 bytes. */
    static void encode(PageServerHeader header, ByteBuffer out) {
        ByteBuffer le = out.slice().order(ByteOrder.LITTLE_ENDIAN);
        le.putInt(OFF_CMD, header.cmd());
        le.putInt(OFF_PAD, 0);
        le.putLong(OFF_NR_PAGES, header.nrPages());
        le.putLong(OFF_VADDR, header.vaddr());
        le.putLong(OFF_DST_ID, header.dstId());
        out.position(out.position() + HEADER_BYTES);
    }

    /** Reads a header from 32 bytes at {@code offset} of {@code in} (absolute; position unchanged). */
    static PageServerHeader decode(ByteBuffer in, int offset) {
        ByteBuffer le = in.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        return new PageServerHeader(le.getInt(offset + OFF_CMD), le.getInt(offset + OFF_PAD),
                le.getLong(offset + OFF_NR_PAGES), le.getLong(offset + OFF_VADDR), le.getLong(offset + OFF_DST_ID));
    }
}
