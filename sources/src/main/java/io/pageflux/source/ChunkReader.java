package io.pageflux.source;

import java.time.Duration;
import java.util.Objects;

/**
 * The synchronous heart of a memory source: fills one buffer with the next pages. {@link ChunkStream}
 * turns it into a demand-driven {@code Flux<PageChunk>}; all calls come from one worker thread,
 * one at a time, so an implementation needs no locking and may keep native state.
 */
public interface ChunkReader extends AutoCloseable {

    /**
     * Reads the next pages into {@code buffer} and returns them as a chunk that takes over the
     * buffer's reference, or returns {@code null} when there is nothing left (the caller then
     * releases the buffer). An exception fails the stream; the caller releases the buffer.
     */
    PageChunk next(PooledBuffer buffer) throws Exception;

    /**
     * {@code true} when {@link #next} would return {@code null}: nothing is left to read. Lets the
     * stream complete right after the last chunk, without waiting for more demand or a free buffer
     * (a consumer holding every buffer would otherwise never see completion). The default,
     * {@code false}, is always safe: the stream then completes on the next read that finds nothing.
     */
    default boolean exhausted() {
        return false;
    }

    /** How long producing {@code chunk} takes on the stream's scheduler (simulated read cost); zero for real reads. */
    default Duration cost(PageChunk chunk) {
        return Duration.ZERO;
    }

    /** Frees what the reader holds (file descriptors, native blocks). Called once, on the worker. */
    @Override
    default void close() {
    }

    /** What {@link #mapping} applies to each chunk: returns the chunk to hand on (it owns the buffer's reference). */
    @FunctionalInterface
    interface ChunkFunction {
        PageChunk apply(PageChunk chunk, PooledBuffer buffer) throws Exception;
    }

    /**
     * A reader that reads through {@code reader} and passes every chunk through {@code f} before handing
     * it on (e.g. to record or classify its pages); {@link #exhausted}, {@link #cost} and {@link #close}
     * are {@code reader}'s.
     */
    static ChunkReader mapping(ChunkReader reader, ChunkFunction f) {
        Objects.requireNonNull(reader, "reader");
        Objects.requireNonNull(f, "f");
        return new ChunkReader() {
            @Override
            public PageChunk next(PooledBuffer buffer) throws Exception {
                PageChunk chunk = reader.next(buffer);
                return chunk == null ? null : f.apply(chunk, buffer);
            }

            @Override
            public boolean exhausted() {
                return reader.exhausted();
            }

            @Override
            public Duration cost(PageChunk chunk) {
                return reader.cost(chunk);
            }

            @Override
            public void close() {
                reader.close();
            }
        };
    }
}
