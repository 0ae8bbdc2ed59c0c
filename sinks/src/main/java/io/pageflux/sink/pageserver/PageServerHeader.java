package io.pageflux.sink.pageserver;

import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import java.nio.ByteBuffer;

/**
 * One page-server request header ({@code struct page_server_iov}, layout in {@link PageServerWire}).
 * A plain value: it checks nothing, so that a decoder can hand malformed headers to whoever
 * decides what to do with them.
 *
 * @param cmd      {@code (flags << 16) | op}
 * @param pad      the padding word (CRIU sends 0; never interpreted)
 * @param nrPages  pages in the run (unsigned)
 * @param vaddr    first address of the run, or the offset inside a shared object
 * @param dstId    {@code (id << 8) | type}
 */
record PageServerHeader(int cmd, int pad, long nrPages, long vaddr, long dstId) {

    static PageServerHeader open2(PagemapId pagemap) {
        return new PageServerHeader(PageServerWire.OP_OPEN2, 0, 0, 0, pagemap.dstId());
    }

    static PageServerHeader parent(PagemapId pagemap) {
        return new PageServerHeader(PageServerWire.OP_PARENT, 0, 0, 0, pagemap.dstId());
    }

    static PageServerHeader addF(PagemapId pagemap, long vaddr, long nrPages, int flags) {
        return new PageServerHeader((flags << 16) | PageServerWire.OP_ADD_F, 0, nrPages, vaddr, pagemap.dstId());
    }

    static PageServerHeader close() {
        return new PageServerHeader(PageServerWire.CMD_CLOSE, 0, 0, 0, 0);
    }

    /** The low 16 bits of cmd. */
    int op() {
        return cmd & 0xffff;
    }

    /** The high 16 bits of cmd: PE_* flags of an ADD_F. */
    int flags() {
        return cmd >>> 16;
    }

    /**
     * How many bytes of page data follow this header on the wire: {@code nr_pages * pageSize} for
     * ADD and for ADD_F with PE_PRESENT, else 0. Saturates at {@link Long#MAX_VALUE} for absurd
     * counts (a receiver rejects those before reading anything).
     */
    long payloadBytes(int pageSize) {
        boolean present = op() == PageServerWire.OP_ADD
                || (op() == PageServerWire.OP_ADD_F && PageFlags.has(flags(), PageFlags.PE_PRESENT));
        if (!present) {
            return 0;
        }
        if (nrPages < 0 || nrPages > Long.MAX_VALUE / pageSize) {
            return Long.MAX_VALUE;
        }
        return nrPages * pageSize;
    }

    /** The 32 wire bytes, little-endian. */
    ByteBuffer toBytes() {
        ByteBuffer out = ByteBuffer.allocate(PageServerWire.HEADER_BYTES);
        PageServerWire.encode(this, out);
        return out.flip();
    }

    @Override
    public String toString() {
        String s = PageServerWire.opName(cmd);
        if (op() == PageServerWire.OP_ADD_F) {
            s += "[" + PageFlags.describe(flags()) + "]";
        }
        return s + " nr_pages=" + Long.toUnsignedString(nrPages) + " vaddr=0x" + Long.toHexString(vaddr)
                + " dst_id=0x" + Long.toHexString(dstId);
    }
}
