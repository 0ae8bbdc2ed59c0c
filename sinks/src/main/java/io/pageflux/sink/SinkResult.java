package io.pageflux.sink;

/**
 * What a sink wrote.
 *
 * @param description  the sink, e.g. {@code dir:/tmp/d1}
 * @param pages        pages received and written (holes not counted)
 * @param bytesWritten bytes that left the process (files, socket) including framing
 * @param entries      pagemap entries written
 */
public record SinkResult(String description, long pages, long bytesWritten, long entries) {
}
