package io.pageflux.sink.criu;

import io.pageflux.source.PagefluxException;
import java.nio.file.Path;

/**
 * Writing an image directory failed: the output exists, is not writable, or the disk filled up.
 * The message names the directory or file, how many bytes had been written to it, the cause
 * ({@code No space left on device}, ...) and what to do. When a write fails after the writer was
 * created, the partial output has already been deleted: nothing that looks complete is left.
 */
public class ImageWriteException extends PagefluxException {

    private final Path path;

    public ImageWriteException(Path path, String message) {
        super(message);
        this.path = path;
    }

    public ImageWriteException(Path path, String message, Throwable cause) {
        super(message, cause);
        this.path = path;
    }

    /** The directory or file at fault. */
    public Path path() {
        return path;
    }
}
