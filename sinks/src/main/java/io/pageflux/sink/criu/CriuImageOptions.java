package io.pageflux.sink.criu;

import java.util.Objects;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * How {@link CriuImageSink} writes. Immutable; {@code withX} returns a modified copy.
 *
 * @param force          replace an existing non-empty output directory (the CLI's {@code --force})
 * @param firstPagesId   pages_id of the first pagemap (1 for a local dump, §1.4)
 * @param chunksInFlight how many chunks the sink requests ahead of the one it writes (the
 *                       {@code publishOn} prefetch); each holds a pool buffer, so keep it small
 * @param scheduler      where the blocking file writes run
 * @param directIo       write pages files with {@code O_DIRECT}, bypassing the page cache (the
 *                       default; falls back to the page cache where the file system refuses it);
 *                       see {@link ImageDirectoryWriter.Options#withDirectIo}
 */
public record CriuImageOptions(boolean force, long firstPagesId, int chunksInFlight, Scheduler scheduler,
                               boolean directIo) {

    /**
     * Four chunks in flight. {@code publishOn} asks for more only after three quarters of its
     * prefetch have been written (for a prefetch of 2: both), so with 2 the reader waited for the
     * writer to empty the queue and the disk then waited for the next read; with 4 one chunk is
     * still queued when the reader is asked for three more, and the disk never waits.
     */
    public static final int DEFAULT_CHUNKS_IN_FLIGHT = 4;

    public CriuImageOptions {
        Objects.requireNonNull(scheduler, "scheduler");
        if (chunksInFlight < 1) {
            throw new IllegalArgumentException("chunksInFlight must be at least 1: " + chunksInFlight);
        }
        if (firstPagesId < 0 || firstPagesId > 0xFFFF_FFFFL) {
            throw new IllegalArgumentException("pages_id is a u32: firstPagesId=" + firstPagesId);
        }
    }

    /** With direct I/O (the default), as before it was an option. */
    public CriuImageOptions(boolean force, long firstPagesId, int chunksInFlight, Scheduler scheduler) {
        this(force, firstPagesId, chunksInFlight, scheduler, true);
    }

    /**
     * No overwrite, pages_id from 1, 4 chunks in flight, writes on {@link Schedulers#boundedElastic()},
     * pages files with direct I/O.
     */
    public static CriuImageOptions defaults() {
        return new CriuImageOptions(false, ImageDirectoryWriter.Options.LOCAL_FIRST_PAGES_ID, DEFAULT_CHUNKS_IN_FLIGHT,
                Schedulers.boundedElastic(), true);
    }

    /** {@code false}: pages files through the page cache (the CLI's {@code --no-direct-io}). */
    public CriuImageOptions withDirectIo(boolean directIo) {
        return new CriuImageOptions(force, firstPagesId, chunksInFlight, scheduler, directIo);
    }

    public CriuImageOptions withForce(boolean force) {
        return new CriuImageOptions(force, firstPagesId, chunksInFlight, scheduler, directIo);
    }

    public CriuImageOptions withFirstPagesId(long firstPagesId) {
        return new CriuImageOptions(force, firstPagesId, chunksInFlight, scheduler, directIo);
    }

    public CriuImageOptions withChunksInFlight(int chunksInFlight) {
        return new CriuImageOptions(force, firstPagesId, chunksInFlight, scheduler, directIo);
    }

    public CriuImageOptions withScheduler(Scheduler scheduler) {
        return new CriuImageOptions(force, firstPagesId, chunksInFlight, scheduler, directIo);
    }
}
