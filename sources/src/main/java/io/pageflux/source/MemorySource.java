package io.pageflux.source;

import java.util.List;
import reactor.core.publisher.Flux;

/**
 * Something whose memory can be dumped: a live process ({@link LiveProcess}), a simulated one for
 * tests, or an existing image directory.
 */
public interface MemorySource {

    /** The process id the images are named after. */
    int pid();

    /** The address space as it is now, in ascending address order. */
    List<MemoryRegion> regions();

    /**
     * The pages that {@code options.policy()} selects, read <b>strictly on demand</b> into buffers
     * of {@code options.pool()}: a chunk is produced only when downstream has requested it and
     * the pool has a free buffer, so no more than the pool's capacity is ever leased.
     * Each emitted chunk belongs to the subscriber, which must {@link PageChunk#release()} it.
     * Progress and faults (vanished pages, skipped regions) are counted in {@code options.stats()}.
     */
    Flux<PageChunk> pages(ReadOptions options);
}
