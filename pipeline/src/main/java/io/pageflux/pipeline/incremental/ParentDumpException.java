package io.pageflux.pipeline.incremental;

import io.pageflux.source.PagefluxException;
import java.nio.file.Path;

/**
 * The directory given as the parent of an incremental dump cannot be one: it is missing, not a dump, or
 * a dump of another process. Nothing was written.
 */
public class ParentDumpException extends PagefluxException {

    private final Path dir;

    public ParentDumpException(Path dir, String message) {
        super(message);
        this.dir = dir;
    }

    public ParentDumpException(Path dir, String message, Throwable cause) {
        super(message, cause);
        this.dir = dir;
    }

    /** The parent directory at fault. */
    public Path dir() {
        return dir;
    }
}
