package io.pageflux.sink.criu;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Parser;
import java.io.BufferedInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Reads one protobuf image file message by message (constant memory, whatever its length),
 * checking the framing of {@link ImageFormat} as it goes. Every fault is an
 * {@link ImageFormatException} naming the file, the byte offset and the field.
 *
 * <p>Not thread-safe; close it when done.
 */
public final class ImageFileReader implements AutoCloseable {

    private static final String DAMAGED = "the file is damaged or not a CRIU image: re-create the dump, "
            + "or check that the directory holds CRIU images";

    private final Path file;
    private final long size;
    private final InputStream in;
    private final byte[] u32 = new byte[ImageFormat.U32_BYTES];
    private long offset;
    private long lastFrameOffset = -1;
    private int messages;
    private final java.util.Map<String, Integer> perField = new java.util.HashMap<>();

    private ImageFileReader(Path file, long size, InputStream in) {
        this.file = file;
        this.size = size;
        this.in = in;
    }

    /**
     * Opens {@code file} and checks its header against {@code kind}.
     *
     * @throws ImageFormatException if the file is too short for the header or a magic is wrong
     * @throws IOException          if the file cannot be read
     */
    public static ImageFileReader open(Path file, ImageFormat.Kind kind) throws IOException {
        long size = Files.size(file);
        ImageFileReader r = new ImageFileReader(file, size, new BufferedInputStream(Files.newInputStream(file), 16384));
        try {
            r.checkHeader(kind);
            return r;
        } catch (RuntimeException | IOException e) {
            r.close();
            throw e;
        }
    }

    private void checkHeader(ImageFormat.Kind kind) throws IOException {
        if (size < kind.headerBytes()) {
            throw new ImageFormatException(file, 0, "magic", "truncated: a " + kind.label() + " image starts with "
                    + kind.headerBytes() + " bytes of magic but the file has only " + size + " bytes", DAMAGED);
        }
        if (kind.hasCommonMagic()) {
            expectMagic(ImageFormat.IMG_COMMON_MAGIC, "IMG_COMMON_MAGIC", "");
        }
        String hint = kind == ImageFormat.Kind.INVENTORY
                ? " (inventory.img starts with its own magic, without IMG_COMMON_MAGIC)" : "";
        expectMagic(kind.magic(), kind.label(), hint);
    }

    private void expectMagic(int expected, String name, String hint) throws IOException {
        long at = offset;
        int actual = readU32();
        if (actual != expected) {
            throw new ImageFormatException(file, at, "magic", "wrong magic " + ImageFormat.hex32(actual) + " expected "
                    + ImageFormat.hex32(expected) + " (" + name + ")" + hint, DAMAGED);
        }
    }

    /**
     * The next message parsed with {@code parser}, or {@code null} at end of file.
     *
     * @param field the message's name for error messages, e.g. {@code PagemapEntry}; messages are
     *              numbered per name from 0, so faults read {@code PagemapEntry[3]}
     * @throws ImageFormatException if the length prefix or the message is truncated, or the
     *                              bytes are not a valid message (including missing required fields)
     */
    public <M> M next(Parser<M> parser, String field) throws IOException {
        if (offset == size) {
            return null;
        }
        long at = offset;
        int index = perField.merge(field, 1, Integer::sum) - 1;
        String name = field + "[" + index + "]";
        long remaining = size - offset;
        if (remaining < ImageFormat.U32_BYTES) {
            throw new ImageFormatException(file, at, name + ".length", "truncated: a length prefix needs "
                    + ImageFormat.U32_BYTES + " bytes but only " + remaining + " remain", DAMAGED);
        }
        long length = Integer.toUnsignedLong(readU32());
        remaining = size - offset;
        if (length > remaining) {
            throw new ImageFormatException(file, at, name, "truncated: message at offset " + at + " claims " + length
                    + " bytes but only " + remaining + " remain", DAMAGED);
        }
        byte[] body = new byte[(int) length]; // <= remaining bytes of an existing file
        readFully(body);
        lastFrameOffset = at;
        messages++;
        try {
            return parser.parseFrom(body);
        } catch (InvalidProtocolBufferException e) {
            throw new ImageFormatException(file, at, name, "not a valid " + field + " message (" + length + " bytes): "
                    + e.getMessage(), DAMAGED, e);
        }
    }

    /** Offset of the next length prefix (= bytes consumed so far). */
    public long offset() {
        return offset;
    }

    /** Offset of the length prefix of the message {@link #next} returned last, {@code -1} before the first. */
    public long lastFrameOffset() {
        return lastFrameOffset;
    }

    /** Messages read so far. */
    public int messages() {
        return messages;
    }

    public Path file() {
        return file;
    }

    public long size() {
        return size;
    }

    private int readU32() throws IOException {
        readFully(u32);
        return ByteBuffer.wrap(u32).order(ByteOrder.LITTLE_ENDIAN).getInt();
    }

    private void readFully(byte[] b) throws IOException {
        int n = 0;
        while (n < b.length) {
            int r = in.read(b, n, b.length - n);
            if (r < 0) {
                // the size was checked up front: the file shrank while we read it
                throw new EOFException("file=" + file + " offset=" + (offset + n) + ": file shrank while reading");
            }
            n += r;
        }
        offset += b.length;
    }

    @Override
    public void close() throws IOException {
        in.close();
    }
}
