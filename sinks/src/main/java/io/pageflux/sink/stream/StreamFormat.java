package io.pageflux.sink.stream;

import io.pageflux.sink.compress.CompressedPagesFormat;

/**
 * The single-stream format: a whole dump as one byte stream, for pipes
 * ({@code pageflux dump --to - | ssh host pageflux unpack - OUT}). Written by {@link StreamSink},
 * read by {@link StreamUnpacker}. Written down once here.
 *
 * <pre>
 *  offset 0
 *  +---------------------------------------------------------------------------------+
 *  | STREAM HEADER (32 bytes)                                                        |
 *  |  0 u32 magic 'PFXS'  4 u16 version=1  6 u8 codec  7 u8 flags (bit 0: pre-dump)  |
 *  |  8 u32 pid          12 u32 page size                                            |
 *  | 16 u64 dump_uptime (microseconds since boot, the inventory's dump_uptime)       |
 *  | 24 u32 max frame raw bytes       28 u32 crc32c(header bytes 0..28)              |
 *  +---------------------------------------------------------------------------------+
 *  | RECORD: 8-byte record header, then `length` bytes of body                       |
 *  |  0 u8 type   1 u8 0   2 u16 0   4 u32 length                                    |
 *  +---------------------------------------------------------------------------------+
 *  | ... more records ...                                                            |
 *  +---------------------------------------------------------------------------------+
 *  | TRAILER record ('T'), the last bytes of the stream                              |
 *  +---------------------------------------------------------------------------------+
 *
 *  type 'L' PARENT   body: UTF-8 absolute path of the parent dump (1..4096 bytes);
 *                    at most once, before the first 'O'
 *  type 'O' PAGEMAP  body 16:  0 u8 kind (1 = task, 2 = shmem)  1..7 zero  8 u64 pid or shmid
 *                    the 'E' and 'F' records that follow belong to this pagemap
 *  type 'E' ENTRY    body 24:  0 u64 vaddr  8 u64 nr_pages  16 u32 PE_* flags  20 u32 zero
 *  type 'F' FRAME    body: the 32-byte frame header of {@link CompressedPagesFormat}
 *                    (codec, raw length, stored length, xxhash64 of the raw bytes, crc32c of the
 *                    payload, crc32c of the header), then the stored payload
 *  type 'T' TRAILER  body 48:  0 u64 'O' records   8 u64 'E' records   16 u64 PE_PRESENT pages
 *                    24 u64 'F' records  32 u64 raw bytes of all frames
 *                    40 u32 crc32c of every stream byte before this record   44 u32 magic 'PFXE'
 * </pre>
 *
 * <ul>
 *   <li>Integers are little-endian; magics are the four ASCII letters as they appear in the stream.</li>
 *   <li>Page bytes: the raw bytes of the 'F' records fill the PE_PRESENT entries announced by the
 *       preceding 'E' records of the current pagemap, in order (a frame may cover several
 *       entries, an entry several frames). A frame never carries more than the announced, not
 *       yet filled pages; when an 'O' or the 'T' record comes, every announced page is filled.</li>
 *   <li>'O' records come in the order the pagemaps were opened (= pages_id order); a pagemap may
 *       be opened again later to continue it. Entries of a pagemap come in ascending address order.</li>
 *   <li>The stream is complete only with a trailer whose counts and checksum match and after
 *       which the stream ends. A reader commits nothing before it has checked that.</li>
 * </ul>
 */
public final class StreamFormat {

    public static final int MAGIC = magic("PFXS");
    public static final int END_MAGIC = magic("PFXE");
    public static final int VERSION = 1;

    public static final int HEADER_BYTES = 32;
    public static final int H_MAGIC = 0;
    public static final int H_VERSION = 4;
    public static final int H_CODEC = 6;
    public static final int H_FLAGS = 7;
    public static final int H_PID = 8;
    public static final int H_PAGE_SIZE = 12;
    public static final int H_DUMP_UPTIME = 16;
    public static final int H_MAX_FRAME_RAW = 24;
    public static final int H_CRC = 28;
    /** Header flag bit: the dump is a pre-dump. */
    public static final int FLAG_PRE_DUMP = 1;

    public static final int RECORD_HEADER_BYTES = 8;
    public static final int R_TYPE = 0;
    public static final int R_LENGTH = 4;

    public static final byte TYPE_PARENT = 'L';
    public static final byte TYPE_PAGEMAP = 'O';
    public static final byte TYPE_ENTRY = 'E';
    public static final byte TYPE_FRAME = 'F';
    public static final byte TYPE_TRAILER = 'T';

    public static final int MAX_PARENT_BYTES = 4096;

    public static final int PAGEMAP_BYTES = 16;
    public static final int PM_KIND = 0;
    public static final int PM_ID = 8;
    public static final int KIND_TASK = 1;
    public static final int KIND_SHMEM = 2;

    public static final int ENTRY_BYTES = 24;
    public static final int E_VADDR = 0;
    public static final int E_NR_PAGES = 8;
    public static final int E_FLAGS = 16;

    public static final int TRAILER_BYTES = 48;
    public static final int T_PAGEMAPS = 0;
    public static final int T_ENTRIES = 8;
    public static final int T_PAGES = 16;
    public static final int T_FRAMES = 24;
    public static final int T_RAW_BYTES = 32;
    public static final int T_CRC = 40;
    public static final int T_END_MAGIC = 44;

    private StreamFormat() {
    }

    static int magic(String fourChars) {
        return (fourChars.charAt(0) & 0xff) | (fourChars.charAt(1) & 0xff) << 8 | (fourChars.charAt(2) & 0xff) << 16
                | (fourChars.charAt(3) & 0xff) << 24;
    }

    /** How errors name a record type. */
    static String typeName(int type) {
        return switch (type) {
            case TYPE_PARENT -> "parent";
            case TYPE_PAGEMAP -> "pagemap";
            case TYPE_ENTRY -> "entry";
            case TYPE_FRAME -> "frame";
            case TYPE_TRAILER -> "trailer";
            default -> String.format("unknown(0x%02x)", type & 0xff);
        };
    }
}
