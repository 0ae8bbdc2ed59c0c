package io.pageflux.sink.criu;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.SinkResult;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Writes a dump as a CRIU image directory (criu-formats.md §1) through an
 * {@link ImageDirectoryWriter}: {@code pagemap-<pid>.img}, {@code pagemap-shmem-<shmid>.img},
 * {@code pages-<id>.img}, {@code inventory.img} and, when the context names a parent dump, a
 * relative {@code parent} link.
 *
 * <p><b>Backpressure and ownership.</b> The sink requests {@link CriuImageOptions#chunksInFlight()}
 * chunks at a time ({@code publishOn} with that prefetch) and writes them, blocking, on
 * {@link CriuImageOptions#scheduler()}. Every chunk is released right after its bytes are
 * written; chunks received but not yet written at an error or cancel are released when the
 * write ends (also through the discard hook).
 *
 * <p><b>Outcome.</b> On completion of the chunks the directory is fsynced and renamed into place,
 * then the {@link SinkResult} emitted. On an error of the chunks or of a write, or on cancel,
 * the temporary directory is deleted: no final directory and no temporary one remain.
 *
 * <p><b>Choices, and where they differ from CRIU.</b>
 * <ul>
 * <li>Inventory: the pre-dump inventory ({@code img_version 0}, {@code dump_uptime},
 *     {@code pre_dump_mode 2}, empty {@code plugins_entry}) is written for full dumps too. A CRIU
 *     full-dump inventory ({@code img_version 2}) describes namespaces, cgroups and LSM state
 *     that pageflux does not dump; claiming it would make the directory look restorable. The
 *     pre-dump inventory makes it a valid parent for a later dump.</li>
 * <li>pages_id order mirrors CRIU ({@link CriuLayout#pagemapOrder}): in a full dump, the pagemaps of the shared anonymous objects
 *     in the context's regions (address order) are opened first, then the task's — so the
 *     vector's shmem object gets pages-1 and the task pages-2, as with CRIU. A pre-dump opens
 *     only the task's up front (CRIU's pre-dump writes no shmem pagemaps). Pagemaps not known in
 *     advance are opened when their first run arrives.</li>
 * <li>Entries carry the page count in both {@code compat_nr_pages} and {@code nr_pages};
 *     CRIU 4.2 writes 0 in the former.</li>
 * <li>Runs without PE_PRESENT (holes) still occupy their bytes in a chunk; those bytes are
 *     skipped, only the entry is written.</li>
 * </ul>
 */
public final class CriuImageSink implements PageSink {

    /** CRIU's read-mode pre-dump: {@link CriuLayout#PRE_DUMP_MODE_READ}. */
    public static final int PRE_DUMP_MODE_READ = CriuLayout.PRE_DUMP_MODE_READ;

    private final Path dir;
    private final CriuImageOptions options;

    public CriuImageSink(Path dir, CriuImageOptions options) {
        this.dir = Objects.requireNonNull(dir, "dir");
        this.options = Objects.requireNonNull(options, "options");
        // the writer's one-time class initialisation, concurrently with the dump's set-up
        WriterWarmUp.start();
    }

    /**
     * Loads and initialises, now and on the calling thread, the classes this sink's writer meets on
     * first use (protobuf messages, record methods, Netty's direct buffers for staging). Creating a
     * sink starts the same work on a background thread; this is for a JVM that writes a
     * class-data-sharing archive ({@code -XX:ArchiveClassesAtExit}) without writing images itself:
     * the {@code pageflux} launcher calls it in the run that makes its archive, so that later dumps
     * to a directory map those classes from the archive whichever dump made it (a cold
     * {@code dump --out DIR} of 1 GiB: ~120 ms less, README Benchmarks). Touches no file; cheap
     * once done.
     *
     * @return true if everything was initialised; false if something failed (logged at debug
     *         level; the writer then meets it on first use and reports it there)
     */
    public static boolean initializeClasses() {
        return WriterWarmUp.run();
    }

    /**
     * Writes {@code chunks} into this sink's directory; see the class description for demand,
     * buffer ownership, and what is left behind on success, error and cancel.
     *
     * @return the counts after the directory was committed; errors with {@link ImageWriteException}
     *         when the output is refused or a write fails, or with the chunks' error
     */
    @Override
    public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
        return Mono.using(
                        () -> new Session(open(context)),
                        session -> chunks
                                .doOnNext(session::received)
                                .publishOn(options.scheduler(), options.chunksInFlight())
                                .doOnNext(session::write)
                                .then(Mono.fromCallable(session::commit)),
                        // after a commit this only checks that nothing is held; on error and cancel it
                        // releases the chunks not yet written and deletes the temporary directory
                        Session::close)
                .doOnDiscard(PageChunk.class, PageChunk::release)
                // creating the directory is blocking I/O too
                .subscribeOn(options.scheduler());
    }

    /**
     * One {@link #write}: the directory writer and the chunks received but not yet written.
     *
     * <p>Why track them instead of relying on {@code publishOn}'s discard hook alone: a cancel
     * disposes {@code publishOn}'s worker, and a drain task that was scheduled but had not started
     * yet is dropped together with the chunks in its queue. Whatever is still in {@link #held}
     * when the session closes is released here; {@link PageChunk#release()} is idempotent, so a
     * chunk also discarded by Reactor is released once.
     */
    private final class Session {
        private final ImageDirectoryWriter writer;
        private final Set<PageChunk> held = ConcurrentHashMap.newKeySet();
        private volatile boolean closed;

        Session(ImageDirectoryWriter writer) {
            this.writer = writer;
        }

        /** On the upstream thread, before the hand-off to the writing worker. */
        void received(PageChunk chunk) {
            held.add(chunk);
            if (closed) {
                releaseHeld(); // raced with close(): it may have missed this one
            }
        }

        /** On the writing worker: writes the runs, then releases the chunk. */
        void write(PageChunk chunk) {
            if (!held.remove(chunk)) {
                return; // released by close(): the write was cancelled
            }
            try {
                writeChunk(writer, chunk);
            } catch (RuntimeException e) {
                if (closed) {
                    // cancelled mid-write (the worker may even have been interrupted, which closes
                    // the file channel): the output is aborted anyway, nobody is left to tell
                    return;
                }
                throw e;
            } finally {
                chunk.release();
            }
        }

        SinkResult commit() {
            writer.commit();
            return new SinkResult(describe(), writer.pages(), writer.bytesWritten(), writer.entries());
        }

        void close() {
            closed = true;
            releaseHeld();
            writer.abort(); // does nothing after a commit
        }

        private void releaseHeld() {
            for (PageChunk c : held) {
                if (held.remove(c)) {
                    c.release();
                }
            }
        }
    }

    private ImageDirectoryWriter open(DumpContext context) {
        return CriuLayout.open(dir, context, CriuLayout.writerOptions(dir, context.dumpUptimeMicros(),
                context.parent(), options.firstPagesId(), options.force()).withDirectIo(options.directIo()));
    }

    private static void writeChunk(ImageDirectoryWriter writer, PageChunk chunk) {
        ByteBuffer data = chunk.data();
        int position = 0;
        for (PageRun run : chunk.runs()) {
            int length = (int) run.bytes(); // a run in a chunk fits the chunk's int length
            ByteBuffer bytes = null;
            if (PageFlags.has(run.flags(), PageFlags.PE_PRESENT)) {
                bytes = data.duplicate().limit(position + length).position(position);
            }
            writer.openPagemap(run.pagemap()).add(run.pagemapVaddr(), run.pages(), run.flags(), bytes);
            position += length;
        }
    }

    public Path directory() {
        return dir;
    }

    public CriuImageOptions options() {
        return options;
    }

    @Override
    public String describe() {
        return "dir:" + dir;
    }

    @Override
    public String toString() {
        return "CriuImageSink[" + dir + "]";
    }
}
