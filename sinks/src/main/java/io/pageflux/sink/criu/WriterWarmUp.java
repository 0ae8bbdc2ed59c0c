package io.pageflux.sink.criu;

import com.sun.nio.file.ExtendedOpenOption;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.UnpooledByteBufAllocator;
import io.pageflux.sink.criu.proto.PagemapProtos.PagemapEntry;
import io.pageflux.sink.criu.proto.PagemapProtos.PagemapHead;
import io.pageflux.source.PagemapId;
import java.nio.file.StandardCopyOption;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import reactor.util.Logger;
import reactor.util.Loggers;

/**
 * Runs the image writer's one-time JVM costs — class loading and static initialisation — on a
 * background thread, before the dump needs them, so that a fresh JVM does not pay them on the
 * write path.
 *
 * <p>Why: in a {@code pageflux dump --out DIR} that lives for one dump, the writer's first use of
 * protobuf-java (descriptors, the runtime version check and the {@code java.util.logging} set-up it
 * brings), of the {@code PagemapId} record's {@code hashCode}/{@code equals} (bootstrapped through
 * {@code ObjectMethods}), of string concatenation, and of Netty's unpooled direct buffers
 * ({@code PlatformDependent}, behind {@link io.pageflux.sink.file.StagingBuffers}) cost ~80 ms
 * before the directory exists and ~45 ms between the first chunk read and its first write — all
 * while the disk, the pace-setter of a file dump, is idle. Started when the sink is created, this
 * runs concurrently with the dump's own set-up (reading {@code /proc/PID/smaps}, attaching), on
 * the core that set-up does not use; what the writer then needs is initialised already, or being
 * initialised (the JVM makes it wait for that, not repeat it).
 *
 * <p>It touches only memory of its own: no file, no directory, a 4 KiB direct buffer allocated
 * and freed at once. It runs at most once per JVM; in a JVM that has written images before it
 * finds everything initialised and ends at once. A failure here is logged as a warning with its
 * cause and otherwise ignored: when it is a static initialiser that failed (e.g. protobuf's runtime
 * version check), the JVM does not run it again, and the writer then meets only
 * {@code NoClassDefFoundError: Could not initialize class ...}; this warning keeps the real cause.
 *
 * <p>Class initialisation by two threads cannot deadlock here: this thread enters each library
 * through the same classes as the writer does (generated message classes, then their file
 * classes; {@code UnpooledByteBufAllocator} first for Netty), so both take the same locks in the
 * same order.
 */
final class WriterWarmUp {

    private static final Logger LOG = Loggers.getLogger(WriterWarmUp.class);
    private static final AtomicBoolean STARTED = new AtomicBoolean();

    private WriterWarmUp() {
    }

    /** Starts the warm-up on a daemon thread, once per JVM; returns at once. */
    static void start() {
        if (STARTED.compareAndSet(false, true)) {
            Thread t = new Thread(WriterWarmUp::run, "pageflux-writer-warmup"); // the result is only logged
            t.setDaemon(true); // never keeps the JVM alive
            t.start();
        }
    }

    /**
     * The work, in the order the writer meets it (the thread's body; also run directly by
     * {@link CriuImageSink#initializeClasses()}).
     *
     * @return true if all of it ran; false if something failed (logged as a warning)
     */
    static boolean run() {
        try {
            // the inventory, written when the directory is created
            byte[] inventory = ImageFormat.frame(CriuLayout.inventory(1));
            // the pagemaps opened up front: the map keyed by the record, their heads, the file names
            Map<PagemapId, String> files = new LinkedHashMap<>();
            PagemapId task = PagemapId.task(1);
            files.put(task, task.pagemapFileName());
            files.put(PagemapId.shmem(2), PagemapId.shmem(2).pagemapFileName());
            files.get(PagemapId.task(1));
            byte[] head = ImageFormat.frame(PagemapHead.newBuilder().setPagesId(1).build());
            Long.toHexString(ThreadLocalRandom.current().nextLong());
            ExtendedOpenOption direct = ExtendedOpenOption.DIRECT;
            // the first chunk: its small runs go through a staging buffer (Netty's unpooled direct memory)
            ByteBuf staging = UnpooledByteBufAllocator.DEFAULT.directBuffer(4096, 4096);
            staging.nioBuffer(0, 4096).alignedSlice(4096);
            staging.release();
            // the entries, written as runs end; the rename at commit
            byte[] entry = ImageFormat.frame(PagemapEntry.newBuilder().setVaddr(4096).setCompatNrPages(1)
                    .setFlags(1).setNrPages(1).build());
            StandardCopyOption move = StandardCopyOption.ATOMIC_MOVE;
            LOG.debug("image writer warmed up: inventoryBytes={} headBytes={} entryBytes={} files={} {} {}",
                    inventory.length, head.length, entry.length, files.size(), direct, move);
            return true;
        } catch (RuntimeException | LinkageError e) {
            // the whole throwable: a failed static initialiser is reported only once, here
            LOG.warn("image writer warm-up failed; if image writing fails with NoClassDefFoundError, this is the"
                    + " cause: " + e, e);
            return false;
        }
    }
}
