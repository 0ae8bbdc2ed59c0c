package io.pageflux.sink.compress;

import com.github.luben.zstd.Zstd;
import com.github.luben.zstd.ZstdCompressCtx;
import com.github.luben.zstd.ZstdDecompressCtx;
import com.github.luben.zstd.ZstdException;
import java.nio.ByteBuffer;
import java.util.Locale;
import java.util.Objects;
import java.util.zip.DataFormatException;
import java.util.zip.Deflater;
import java.util.zip.Inflater;
import net.jpountz.lz4.LZ4Compressor;
import net.jpountz.lz4.LZ4Exception;
import net.jpountz.lz4.LZ4Factory;
import net.jpountz.lz4.LZ4SafeDecompressor;

/**
 * A compression algorithm and its level: {@code zstd[:1..22]} (zstd-jni), {@code lz4} (lz4-java,
 * block format, fast compressor), {@code gzip[:1..9]} (the JDK's DEFLATE, raw RFC 1951 blocks
 * without the gzip wrapper: pageflux's own frame headers carry length and checksum) or
 * {@code none}. Immutable and thread-safe; the {@link Compressor}s and {@link Decompressor}s it
 * creates are not thread-safe (one per thread) and hold native memory until closed.
 *
 * <p>Parse user input with {@link #parse(String)}; {@link #toString()} gives it back
 * ({@code zstd:3}, {@code lz4}, {@code gzip:6}, {@code none}).
 */
public final class Codec {

    /** The algorithm, with the id it has in pageflux's frame headers and the file-name suffix. */
    public enum Algorithm {
        /** Bytes stored as they are (also used for single frames that did not shrink). */
        NONE(0, "none", ""),
        ZSTD(1, "zstd", ".zst"),
        LZ4(2, "lz4", ".lz4"),
        /** DEFLATE as gzip uses it; named gzip because that is what users type. */
        GZIP(3, "gzip", ".gz");

        private final int id;
        private final String label;
        private final String suffix;

        Algorithm(int id, String label, String suffix) {
            this.id = id;
            this.label = label;
            this.suffix = suffix;
        }

        /** The codec byte in file and frame headers. */
        public int id() {
            return id;
        }

        /** The name used on the command line. */
        public String label() {
            return label;
        }

        /** Appended to {@code pages-<id>.img}: {@code .zst}, {@code .lz4}, {@code .gz}, or empty. */
        public String fileSuffix() {
            return suffix;
        }

        /**
         * The algorithm with codec byte {@code id}.
         *
         * @throws IllegalArgumentException for an unknown id
         */
        public static Algorithm ofId(int id) {
            for (Algorithm a : values()) {
                if (a.id == id) {
                    return a;
                }
            }
            throw new IllegalArgumentException("unknown codec id=" + id + " (known: 0 none, 1 zstd, 2 lz4, 3 gzip)");
        }
    }

    /** zstd's default level: a good balance of speed and ratio for memory pages. */
    public static final int ZSTD_DEFAULT_LEVEL = 3;
    public static final int ZSTD_MIN_LEVEL = 1;
    public static final int ZSTD_MAX_LEVEL = 22;
    /** The level {@code gzip} uses without one. */
    public static final int GZIP_DEFAULT_LEVEL = 6;
    public static final int GZIP_MIN_LEVEL = 1;
    public static final int GZIP_MAX_LEVEL = 9;

    static final String ACCEPTED_FORMS = "zstd, zstd:<1-22>, lz4, gzip, gzip:<1-9>, none";

    private static final LZ4Factory LZ4 = LZ4Factory.fastestInstance();

    private final Algorithm algorithm;
    private final int level;

    private Codec(Algorithm algorithm, int level) {
        this.algorithm = algorithm;
        this.level = level;
    }

    public static Codec none() {
        return new Codec(Algorithm.NONE, 0);
    }

    public static Codec zstd() {
        return zstd(ZSTD_DEFAULT_LEVEL);
    }

    /** @throws IllegalArgumentException if {@code level} is not 1..22 */
    public static Codec zstd(int level) {
        checkLevel("zstd:" + level, level, ZSTD_MIN_LEVEL, ZSTD_MAX_LEVEL);
        return new Codec(Algorithm.ZSTD, level);
    }

    public static Codec lz4() {
        return new Codec(Algorithm.LZ4, 0);
    }

    public static Codec gzip() {
        return gzip(GZIP_DEFAULT_LEVEL);
    }

    /** @throws IllegalArgumentException if {@code level} is not 1..9 */
    public static Codec gzip(int level) {
        checkLevel("gzip:" + level, level, GZIP_MIN_LEVEL, GZIP_MAX_LEVEL);
        return new Codec(Algorithm.GZIP, level);
    }

    /**
     * Parses {@code zstd}, {@code zstd:3}, {@code lz4}, {@code gzip}, {@code gzip:9}, {@code none}
     * (case-insensitive, surrounding blanks ignored).
     *
     * @throws IllegalArgumentException naming the text and listing the accepted forms
     */
    public static Codec parse(String text) {
        Objects.requireNonNull(text, "text");
        String t = text.trim().toLowerCase(Locale.ROOT);
        int colon = t.indexOf(':');
        String name = colon < 0 ? t : t.substring(0, colon);
        String levelText = colon < 0 ? null : t.substring(colon + 1);
        switch (name) {
            case "zstd":
                return levelText == null ? zstd() : zstd(parseLevel(text, levelText, ZSTD_MIN_LEVEL, ZSTD_MAX_LEVEL));
            case "gzip":
                return levelText == null ? gzip() : gzip(parseLevel(text, levelText, GZIP_MIN_LEVEL, GZIP_MAX_LEVEL));
            case "lz4":
            case "none":
                if (levelText != null) {
                    throw new IllegalArgumentException("not a codec: '" + text + "' (" + name
                            + " takes no level; accepted: " + ACCEPTED_FORMS + ")");
                }
                return name.equals("lz4") ? lz4() : none();
            default:
                throw new IllegalArgumentException("not a codec: '" + text + "' (accepted: " + ACCEPTED_FORMS + ")");
        }
    }

    private static int parseLevel(String text, String levelText, int min, int max) {
        int level;
        try {
            level = Integer.parseInt(levelText);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("not a codec: '" + text + "' (level '" + levelText
                    + "' is not a number; accepted: " + ACCEPTED_FORMS + ")");
        }
        checkLevel(text, level, min, max);
        return level;
    }

    private static void checkLevel(String text, int level, int min, int max) {
        if (level < min || level > max) {
            throw new IllegalArgumentException("not a codec: '" + text + "' (level=" + level + " is outside "
                    + min + ".." + max + "; accepted: " + ACCEPTED_FORMS + ")");
        }
    }

    public Algorithm algorithm() {
        return algorithm;
    }

    /** The level; 0 for {@code lz4} and {@code none}, which have none. */
    public int level() {
        return level;
    }

    /** {@link Algorithm#fileSuffix()}. */
    public String fileSuffix() {
        return algorithm.fileSuffix();
    }

    /** A new compressor; close it to free its native context. Not thread-safe. */
    public Compressor newCompressor() {
        return switch (algorithm) {
            case NONE -> new StoreCompressor();
            case ZSTD -> new ZstdCompressor(level);
            case LZ4 -> new Lz4Compressor();
            case GZIP -> new DeflateCompressor(level);
        };
    }

    /** A decompressor for {@code algorithm} (levels do not matter when decompressing). Not thread-safe. */
    public static Decompressor newDecompressor(Algorithm algorithm) {
        return switch (algorithm) {
            case NONE -> new StoreDecompressor();
            case ZSTD -> new ZstdDecompressor();
            case LZ4 -> new Lz4Decompressor();
            case GZIP -> new DeflateDecompressor();
        };
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Codec c && c.algorithm == algorithm && c.level == level;
    }

    @Override
    public int hashCode() {
        return algorithm.hashCode() * 31 + level;
    }

    /** The form {@link #parse(String)} accepts: {@code zstd:3}, {@code lz4}, {@code gzip:6}, {@code none}. */
    @Override
    public String toString() {
        return switch (algorithm) {
            case ZSTD, GZIP -> algorithm.label() + ":" + level;
            default -> algorithm.label();
        };
    }

    /**
     * Compresses one block of bytes into a self-contained payload (decompressible on its own).
     * Reads {@code src} from position to limit, writes into {@code dst} from its position to
     * its limit; positions and limits of both buffers are left unchanged.
     */
    public interface Compressor extends AutoCloseable {

        /** @return bytes written to {@code dst}, or {@code -1} if the result would not fit in {@code dst.remaining()} */
        int compress(ByteBuffer src, ByteBuffer dst);

        @Override
        void close();
    }

    /**
     * Decompresses one payload made by the matching {@link Compressor}: {@code src} position..limit
     * is the payload, and it must produce exactly {@code dst.remaining()} bytes. Positions and
     * limits are left unchanged.
     */
    public interface Decompressor extends AutoCloseable {

        /** @throws CorruptPayloadException if the payload is malformed or has the wrong length */
        void decompress(ByteBuffer src, ByteBuffer dst);

        @Override
        void close();
    }

    /** A payload did not decompress to the length its header promised. */
    public static final class CorruptPayloadException extends RuntimeException {
        CorruptPayloadException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    private static final class StoreCompressor implements Compressor {
        @Override
        public int compress(ByteBuffer src, ByteBuffer dst) {
            if (src.remaining() > dst.remaining()) {
                return -1;
            }
            dst.duplicate().put(src.duplicate());
            return src.remaining();
        }

        @Override
        public void close() {
        }
    }

    private static final class StoreDecompressor implements Decompressor {
        @Override
        public void decompress(ByteBuffer src, ByteBuffer dst) {
            if (src.remaining() != dst.remaining()) {
                throw new CorruptPayloadException("stored payload is " + src.remaining() + " bytes, expected "
                        + dst.remaining(), null);
            }
            dst.duplicate().put(src.duplicate());
        }

        @Override
        public void close() {
        }
    }

    private static final class ZstdCompressor implements Compressor {
        private final ZstdCompressCtx ctx;

        ZstdCompressor(int level) {
            // one context per thread, reused across frames: creating one costs more than a small frame
            ctx = new ZstdCompressCtx().setLevel(level).setChecksum(false).setContentSize(true);
        }

        @Override
        public int compress(ByteBuffer src, ByteBuffer dst) {
            if (dst.remaining() == 0) {
                return -1;
            }
            try {
                if (src.isDirect() && dst.isDirect()) {
                    return ctx.compressDirectByteBuffer(dst, dst.position(), dst.remaining(), src, src.position(),
                            src.remaining());
                }
                byte[] in = toArray(src);
                byte[] out = new byte[dst.remaining()];
                int n = ctx.compressByteArray(out, 0, out.length, in, 0, in.length);
                dst.duplicate().put(out, 0, n);
                return n;
            } catch (ZstdException e) {
                if (e.getErrorCode() == Zstd.errDstSizeTooSmall()) {
                    return -1;
                }
                throw e;
            }
        }

        @Override
        public void close() {
            ctx.close();
        }
    }

    private static final class ZstdDecompressor implements Decompressor {
        private final ZstdDecompressCtx ctx = new ZstdDecompressCtx();

        @Override
        public void decompress(ByteBuffer src, ByteBuffer dst) {
            int n;
            try {
                if (src.isDirect() && dst.isDirect()) {
                    n = ctx.decompressDirectByteBuffer(dst, dst.position(), dst.remaining(), src, src.position(),
                            src.remaining());
                } else {
                    byte[] in = toArray(src);
                    byte[] out = new byte[dst.remaining()];
                    n = ctx.decompressByteArray(out, 0, out.length, in, 0, in.length);
                    dst.duplicate().put(out, 0, n);
                }
            } catch (ZstdException e) {
                throw new CorruptPayloadException("zstd: " + e.getMessage(), e);
            }
            if (n != dst.remaining()) {
                throw new CorruptPayloadException("zstd payload gave " + n + " bytes, expected " + dst.remaining(), null);
            }
        }

        @Override
        public void close() {
            ctx.close();
        }
    }

    private static final class Lz4Compressor implements Compressor {
        private final LZ4Compressor compressor = LZ4.fastCompressor();

        @Override
        public int compress(ByteBuffer src, ByteBuffer dst) {
            try {
                return compressor.compress(src, src.position(), src.remaining(), dst, dst.position(), dst.remaining());
            } catch (LZ4Exception e) {
                // the only way the fast compressor fails on valid input: dst too small
                return -1;
            }
        }

        @Override
        public void close() {
        }
    }

    private static final class Lz4Decompressor implements Decompressor {
        private final LZ4SafeDecompressor decompressor = LZ4.safeDecompressor();

        @Override
        public void decompress(ByteBuffer src, ByteBuffer dst) {
            int n;
            try {
                n = decompressor.decompress(src, src.position(), src.remaining(), dst, dst.position(), dst.remaining());
            } catch (LZ4Exception e) {
                throw new CorruptPayloadException("lz4: " + e.getMessage(), e);
            }
            if (n != dst.remaining()) {
                throw new CorruptPayloadException("lz4 payload gave " + n + " bytes, expected " + dst.remaining(), null);
            }
        }

        @Override
        public void close() {
        }
    }

    private static final class DeflateCompressor implements Compressor {
        private final Deflater deflater;

        DeflateCompressor(int level) {
            deflater = new Deflater(level, true);
        }

        @Override
        public int compress(ByteBuffer src, ByteBuffer dst) {
            deflater.reset();
            deflater.setInput(src.duplicate());
            deflater.finish();
            ByteBuffer out = dst.duplicate();
            while (!deflater.finished()) {
                if (!out.hasRemaining()) {
                    return -1;
                }
                deflater.deflate(out);
            }
            return out.position() - dst.position();
        }

        @Override
        public void close() {
            deflater.end();
        }
    }

    private static final class DeflateDecompressor implements Decompressor {
        private final Inflater inflater = new Inflater(true);

        @Override
        public void decompress(ByteBuffer src, ByteBuffer dst) {
            inflater.reset();
            inflater.setInput(src.duplicate());
            ByteBuffer out = dst.duplicate();
            try {
                while (!inflater.finished()) {
                    int n = inflater.inflate(out);
                    if (n == 0 && (inflater.needsInput() || !out.hasRemaining() || inflater.needsDictionary())) {
                        break;
                    }
                }
            } catch (DataFormatException e) {
                throw new CorruptPayloadException("deflate: " + e.getMessage(), e);
            }
            if (!inflater.finished() || out.hasRemaining() || inflater.getRemaining() != 0) {
                throw new CorruptPayloadException("deflate payload gave " + (out.position() - dst.position())
                        + " bytes (finished=" + inflater.finished() + "), expected " + dst.remaining(), null);
            }
        }

        @Override
        public void close() {
            inflater.end();
        }
    }

    private static byte[] toArray(ByteBuffer b) {
        byte[] a = new byte[b.remaining()];
        b.duplicate().get(a);
        return a;
    }
}
