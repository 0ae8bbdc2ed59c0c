package io.pageflux.sink.compress;

/**
 * The layout of a compressed pages file ({@code pages-<id>.img.zst}, {@code .lz4}, {@code .gz}),
 * written down once. It holds exactly the bytes of the plain {@code pages-<id>.img} CRIU would
 * have written (the "raw" bytes: the pages of the pagemap's PE_PRESENT entries, in order), cut
 * into independent frames, followed by an index so a reader can seek to any raw offset and
 * decompress only the frames it needs.
 *
 * <pre>
 *  file offset 0
 *  +------------------------------------------------------------------------------+
 *  | FILE HEADER (32 bytes)                                                       |
 *  |  0 u32 magic 'PFXC'   4 u16 version=1   6 u8 codec   7 u8 0                  |
 *  |  8 u32 page size     12 u32 max frame raw bytes     16 u64 0   24 u32 0      |
 *  | 28 u32 crc32c(bytes 0..28)                                                   |
 *  +------------------------------------------------------------------------------+
 *  | FRAME 0: FRAME HEADER (32 bytes)                                             |
 *  |  0 u32 magic 'PFXF'   4 u8 codec (0 = stored as is)   5 u8 0   6 u16 0       |
 *  |  8 u32 raw length    12 u32 stored length                                    |
 *  | 16 u64 xxhash64(raw bytes, seed 0)                                           |
 *  | 24 u32 crc32c(stored payload)   28 u32 crc32c(header bytes 0..28)            |
 *  |        followed by the stored payload (stored length bytes)                  |
 *  +------------------------------------------------------------------------------+
 *  | FRAME 1 ...                                     (frames in raw-offset order)  |
 *  +------------------------------------------------------------------------------+
 *  | INDEX: one 24-byte entry per frame                                           |
 *  |  0 u64 raw offset   8 u64 file offset of the frame header                    |
 *  | 16 u32 raw length  20 u32 stored length                                      |
 *  +------------------------------------------------------------------------------+
 *  | FOOTER (48 bytes, the last bytes of the file)                                |
 *  |  0 u64 index file offset   8 u64 frame count   16 u64 total raw bytes        |
 *  | 24 u64 xxhash64(index bytes, seed 0)   32 u32 index entry size=24            |
 *  | 36 u32 0   40 u32 crc32c(footer bytes 0..40)   44 u32 magic 'PFXE'           |
 *  +------------------------------------------------------------------------------+
 * </pre>
 *
 * <ul>
 *   <li>All integers little-endian (as CRIU's own images on x86_64/arm64). Magics are the four
 *       ASCII letters as they appear in the file.</li>
 *   <li>Each frame's payload decompresses on its own (a complete zstd frame, an lz4 block, a raw
 *       DEFLATE stream); a frame whose compressed form is not smaller than its raw bytes is
 *       stored as is with codec 0, so incompressible pages cost 32 bytes per frame, nothing more.</li>
 *   <li>Raw lengths are whole pages. Frames are contiguous in raw space: frame {@code i} starts at
 *       the raw offset where frame {@code i-1} ended; the index's raw offsets must say the same.</li>
 *   <li>Checks on read: the footer's crc32c and magic (a missing footer means the file was
 *       truncated), the index's xxhash64, each frame header's crc32c and its agreement with the
 *       index, each payload's crc32c before decompressing, and the xxhash64 of the raw bytes
 *       after decompressing.</li>
 *   <li>An empty pages file (no PE_PRESENT pages) is header + footer only.</li>
 * </ul>
 */
public final class CompressedPagesFormat {

    /** {@code 'P','F','X','C'} read as a little-endian u32. */
    public static final int FILE_MAGIC = magic("PFXC");
    /** {@code 'P','F','X','F'}. */
    public static final int FRAME_MAGIC = magic("PFXF");
    /** {@code 'P','F','X','E'}: the very last four bytes of a complete file. */
    public static final int END_MAGIC = magic("PFXE");
    public static final int VERSION = 1;

    public static final int FILE_HEADER_BYTES = 32;
    public static final int FH_MAGIC = 0;
    public static final int FH_VERSION = 4;
    public static final int FH_CODEC = 6;
    public static final int FH_PAGE_SIZE = 8;
    public static final int FH_MAX_FRAME_RAW = 12;
    public static final int FH_CRC = 28;

    public static final int FRAME_HEADER_BYTES = 32;
    public static final int FR_MAGIC = 0;
    public static final int FR_CODEC = 4;
    public static final int FR_RAW_LENGTH = 8;
    public static final int FR_STORED_LENGTH = 12;
    public static final int FR_RAW_XXHASH64 = 16;
    public static final int FR_PAYLOAD_CRC = 24;
    public static final int FR_HEADER_CRC = 28;

    public static final int INDEX_ENTRY_BYTES = 24;
    public static final int IX_RAW_OFFSET = 0;
    public static final int IX_FILE_OFFSET = 8;
    public static final int IX_RAW_LENGTH = 16;
    public static final int IX_STORED_LENGTH = 20;

    public static final int FOOTER_BYTES = 48;
    public static final int FT_INDEX_OFFSET = 0;
    public static final int FT_FRAME_COUNT = 8;
    public static final int FT_RAW_BYTES = 16;
    public static final int FT_INDEX_XXHASH64 = 24;
    public static final int FT_INDEX_ENTRY_SIZE = 32;
    public static final int FT_CRC = 40;
    public static final int FT_END_MAGIC = 44;

    private CompressedPagesFormat() {
    }

    /** The four ASCII characters as the little-endian u32 that spells them on disk. */
    static int magic(String fourChars) {
        return (fourChars.charAt(0) & 0xff) | (fourChars.charAt(1) & 0xff) << 8 | (fourChars.charAt(2) & 0xff) << 16
                | (fourChars.charAt(3) & 0xff) << 24;
    }

    /** {@code pages-<id>.img} + the codec's suffix. */
    public static String pagesFileName(long pagesId, Codec.Algorithm algorithm) {
        return "pages-" + pagesId + ".img" + algorithm.fileSuffix();
    }
}
