package io.pageflux.source.incremental;

import io.pageflux.source.freeze.FreezingSource;
import java.time.Duration;

/**
 * How one iteration of an incremental dump finds the pages unchanged since its parent (which become
 * PE_PARENT holes): chosen once per iteration, see {@link ChangeDetection}. Two implementations:
 * <ul>
 *   <li>{@link DigestDetector}, {@value DigestDetector#METHOD}: every page is read and hashed; pages whose
 *       64-bit digest equals the parent's are holes. Works on every kernel.</li>
 *   <li>{@link SoftDirtyDetector}, {@value SoftDirtyDetector#METHOD}: while the target is frozen the
 *       kernel's soft-dirty bits say which pages were written since the parent; the others are holes and
 *       are <b>not read</b>. Needs {@code CONFIG_MEM_SOFT_DIRTY} and a parent whose dump cleared the bits.</li>
 * </ul>
 * Both leave a complete {@link PageDigests} for the next iteration, so either method can follow either.
 * One detector serves one dump; counters may be read from any thread.
 */
public interface PageChangeDetector {

    /** {@value DigestDetector#METHOD} or {@value SoftDirtyDetector#METHOD}. */
    String method();

    /** {@code source} set up to detect changes (reader decorator, frozen scan step). */
    FreezingSource configure(FreezingSource source);

    /** Pages written with PE_PRESENT: changed since the parent, or not in it. */
    long changedPages();

    /** Pages written as PE_PARENT holes. */
    long unchangedPages();

    /** Pages passed on as holes without being read (0 for page digests, which read every page). */
    long pagesNotRead();

    /** Time spent hashing pages (on the read worker, while the target runs in a pre-dump). */
    Duration hashTime();

    /** Time spent while the target was frozen on this method's behalf (reading and clearing soft-dirty bits). */
    Duration frozenTime();

    /** Whether this dump cleared the soft-dirty bits while the target was frozen (after the scan). */
    boolean clearedSoftDirty();

    /**
     * The digests of every page of this dump, after the stream completed, labelled with the dump and with
     * {@link PageDigests#softDirtyCleared()} as {@link #clearedSoftDirty()}.
     */
    PageDigests digests(int pid, long dumpUptimeMicros);
}
