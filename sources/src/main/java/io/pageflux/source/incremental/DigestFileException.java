package io.pageflux.source.incremental;

import io.pageflux.source.PagefluxException;
import java.nio.file.Path;

/** A {@value PageDigests#FILE_NAME} that cannot be used: damaged, truncated, or of another format. */
public class DigestFileException extends PagefluxException {

    private final Path file;
    private final long offset;

    public DigestFileException(Path file, long offset, String field, String problem) {
        super("bad digest file: file=" + file + " offset=" + offset + " field=" + field + ": " + problem
                + "; delete it to dump every page again (no PE_PARENT holes against this dump)");
        this.file = file;
        this.offset = offset;
    }

    public Path file() {
        return file;
    }

    public long offset() {
        return offset;
    }
}
