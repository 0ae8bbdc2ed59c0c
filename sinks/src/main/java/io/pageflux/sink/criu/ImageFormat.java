package io.pageflux.sink.criu;

import com.google.protobuf.CodedOutputStream;
import com.google.protobuf.MessageLite;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The layout of CRIU's protobuf image files (criu-formats.md §1.1), written down once.
 *
 * <pre>
 * pagemap-&lt;pid&gt;.img, pagemap-shmem-&lt;shmid&gt;.img:
 *
 *  offset 0            4            8         12                12+L1     16+L1
 *  +-------------------+------------+---------+-----------------+---------+-----------------+--
 *  | IMG_COMMON_MAGIC  | PAGEMAP    | u32 L1  | PagemapHead     | u32 L2  | PagemapEntry    | ...
 *  | 0x54564319        | 0x56084025 |         | (L1 bytes)      |         | (L2 bytes)      |
 *  +-------------------+------------+---------+-----------------+---------+-----------------+--
 *
 * inventory.img (no common magic):
 *
 *  offset 0            4         8
 *  +-------------------+---------+-----------------+
 *  | INVENTORY         | u32 L   | InventoryEntry  |
 *  | 0x58313116        |         | (L bytes)       |
 *  +-------------------+---------+-----------------+
 *
 * pages-&lt;pages_id&gt;.img: no header, raw pages back to back.
 * </pre>
 *
 * All integers are little-endian (host order on x86_64 and arm64); each message is one packed
 * protobuf message preceded by its length, repeated until end of file.
 */
public final class ImageFormat {

    /** First u32 of every protobuf image except the inventory. */
    public static final int IMG_COMMON_MAGIC = 0x54564319;
    /** Per-image magic of task and shared-anonymous pagemaps. */
    public static final int PAGEMAP_MAGIC = 0x56084025;
    /** The inventory's only magic (no {@link #IMG_COMMON_MAGIC} before it). */
    public static final int INVENTORY_MAGIC = 0x58313116;

    /** Size of each magic and of each message's length prefix. */
    public static final int U32_BYTES = 4;
    /** Bytes before the first message of a pagemap: common magic + pagemap magic. */
    public static final int PAGEMAP_HEADER_BYTES = 2 * U32_BYTES;
    /** Bytes before the first message of the inventory: its magic. */
    public static final int INVENTORY_HEADER_BYTES = U32_BYTES;

    /** File name of the inventory image. */
    public static final String INVENTORY_FILE = "inventory.img";
    /** Name of the symlink to the previous dump of an incremental chain. */
    public static final String PARENT_LINK = "parent";

    /** Which kind of image a file is; decides its header. */
    public enum Kind {
        PAGEMAP(true, PAGEMAP_MAGIC, "PAGEMAP"),
        INVENTORY(false, INVENTORY_MAGIC, "INVENTORY");

        private final boolean commonMagic;
        private final int magic;
        private final String label;

        Kind(boolean commonMagic, int magic, String label) {
            this.commonMagic = commonMagic;
            this.magic = magic;
            this.label = label;
        }

        /** Whether {@link #IMG_COMMON_MAGIC} precedes {@link #magic()}. */
        public boolean hasCommonMagic() {
            return commonMagic;
        }

        public int magic() {
            return magic;
        }

        /** The magic's name as {@code crit} prints it. */
        public String label() {
            return label;
        }

        /** Bytes before the first length prefix. */
        public int headerBytes() {
            return commonMagic ? PAGEMAP_HEADER_BYTES : INVENTORY_HEADER_BYTES;
        }

        /** The header bytes, ready to write (position 0, limit {@link #headerBytes()}). */
        public ByteBuffer header() {
            ByteBuffer b = ByteBuffer.allocate(headerBytes()).order(ByteOrder.LITTLE_ENDIAN);
            if (commonMagic) {
                b.putInt(IMG_COMMON_MAGIC);
            }
            b.putInt(magic);
            return b.flip();
        }
    }

    private ImageFormat() {
    }

    /** {@code message} with its u32 length prefix, as it appears in an image file. */
    public static byte[] frame(MessageLite message) {
        int size = message.getSerializedSize();
        byte[] out = new byte[U32_BYTES + size];
        ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN).putInt(size);
        CodedOutputStream cos = CodedOutputStream.newInstance(out, U32_BYTES, size);
        try {
            message.writeTo(cos);
            cos.checkNoSpaceLeft();
        } catch (java.io.IOException e) {
            // writing into an exactly sized array cannot fail unless the message changed meanwhile
            throw new IllegalStateException("could not serialize " + message.getClass().getSimpleName(), e);
        }
        return out;
    }

    /** {@code 0x54564319}: how magics are spelled in messages. */
    static String hex32(int value) {
        return String.format("0x%08x", value);
    }
}
