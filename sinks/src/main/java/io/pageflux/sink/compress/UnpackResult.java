package io.pageflux.sink.compress;

import java.nio.file.Path;

/**
 * What an unpack wrote.
 *
 * @param directory   the plain image directory created
 * @param pagemaps    pagemaps written
 * @param entries     pagemap entries (as in the written pagemaps)
 * @param pages       PE_PRESENT pages written to {@code pages-<id>.img} files
 * @param frames      frames decompressed and verified
 * @param inputBytes  bytes read: the compressed files, or the stream
 */
public record UnpackResult(Path directory, long pagemaps, long entries, long pages, long frames, long inputBytes) {

    /** Bytes of page data written. */
    public long pageBytes() {
        return pages * io.pageflux.source.PageRun.PAGE_SIZE;
    }
}
