package io.pageflux.sink.criu;

import io.pageflux.source.PagefluxException;
import java.nio.file.Path;

/**
 * An image file is not what CRIU's format says it should be: wrong magic, a truncated message, a
 * message that is not valid protobuf, entries out of order, a pages file of the wrong size.
 * The message names the file, the byte offset and the field at fault as {@code key=value} facts,
 * says what is wrong and what to do.
 */
public class ImageFormatException extends PagefluxException {

    private final Path file;
    private final long offset;
    private final String field;

    /**
     * @param file    the image file at fault
     * @param offset  byte offset in {@code file} where the problem is ({@code -1} if it concerns the whole file)
     * @param field   which field or message, e.g. {@code magic}, {@code length}, {@code PagemapEntry[3]}
     * @param problem what is wrong, e.g. {@code wrong magic 0x1 expected 0x54564319}
     * @param remedy  what to do about it
     */
    public ImageFormatException(Path file, long offset, String field, String problem, String remedy) {
        this(file, offset, field, problem, remedy, null);
    }

    public ImageFormatException(Path file, long offset, String field, String problem, String remedy,
                                Throwable cause) {
        super("bad image: file=" + file + (offset >= 0 ? " offset=" + offset : "") + " field=" + field + ": "
                + problem + (remedy.isEmpty() ? "" : "; " + remedy), cause);
        this.file = file;
        this.offset = offset;
        this.field = field;
    }

    public Path file() {
        return file;
    }

    /** Byte offset of the fault, or {@code -1} when it concerns the whole file. */
    public long offset() {
        return offset;
    }

    public String field() {
        return field;
    }
}
