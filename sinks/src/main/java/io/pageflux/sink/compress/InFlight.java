package io.pageflux.sink.compress;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;

/**
 * Compressed chunks between the compressor and the thread that writes them, so that a cancel
 * never leaks one. Reactor's {@code publishOn} does not always discard its queue when cancelled
 * while a drain is pending on a busy worker (the pending drain is disposed with the worker), so
 * a sink {@link #track}s each chunk before the hop, {@link #take}s it on the writing thread, and
 * {@link #close}s this when it ends: whatever was not taken is released then, and anything that
 * arrives afterwards at once. Thread-safe.
 */
public final class InFlight {

    private final Set<CompressedChunk> chunks = Collections.newSetFromMap(new IdentityHashMap<>());
    private boolean closed;

    /** Registers {@code chunk}; releases it right away if this was already closed. */
    public void track(CompressedChunk chunk) {
        synchronized (this) {
            if (!closed) {
                chunks.add(chunk);
                return;
            }
        }
        chunk.release();
    }

    /**
     * Claims {@code chunk} for writing.
     *
     * @return false if it was released by {@link #close()} (do not touch it), true if the
     *         caller owns it now (and releases it)
     */
    public synchronized boolean take(CompressedChunk chunk) {
        return chunks.remove(chunk) && !closed;
    }

    /** Releases every chunk not taken; later {@link #track}s release immediately. */
    public void close() {
        List<CompressedChunk> left;
        synchronized (this) {
            closed = true;
            left = new ArrayList<>(chunks);
            chunks.clear();
        }
        left.forEach(CompressedChunk::release);
    }
}
