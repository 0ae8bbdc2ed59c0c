package io.pageflux.source.incremental;

import io.pageflux.source.PagefluxException;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.freeze.ProcTask;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.Objects;
import java.util.OptionalLong;

/**
 * Which dump last cleared the soft-dirty bits of a process. A clear bit means "not written since the last
 * clear", so it says something about the parent only if the parent's dump made that last clear: a chain that
 * branches ({@code --parent D1} again after D2 cleared the bits) or a dump that failed after clearing would
 * otherwise turn pages written in between into wrong holes.
 *
 * <p>One small file per process ({@code soft-dirty-PID-STARTTIME}, the start time telling a reused pid apart)
 * holding either {@code cleared dump_uptime=U} (the dump with that {@code dump_uptime} completed) or
 * {@code clearing} (a dump cleared the bits, or is about to, and has not completed, or failed). {@link #tracking}
 * writes {@code clearing} before every clear (before the freeze); {@link #completed} records the dump once its
 * images and digests are written. Anything else — no file, {@code clearing}, another uptime — makes the next
 * iteration compare page digests. Clears made by other tools (CRIU) cannot be seen: don't mix them on one process.
 *
 * <p>Where: {@code /run/pageflux} when this process may write there (root), else {@code java.io.tmpdir}/
 * {@code pageflux-USER}. Root and a process's owner therefore keep separate records: don't let both dump one
 * process with soft-dirty (a clear by one is invisible to the other); {@code --change-detection digest} is
 * always correct. (A shared location both trust needs ownership checks against forged records; not done.)
 */
public final class SoftDirtyLedger {

    /** Where this ledger reads and writes. */
    private final Path dir;

    private SoftDirtyLedger(Path dir) {
        this.dir = Objects.requireNonNull(dir, "dir");
    }

    /** A ledger in {@code dir} (created when first written). */
    public static SoftDirtyLedger at(Path dir) {
        return new SoftDirtyLedger(dir);
    }

    /** The ledger shared by every pageflux of this machine: {@code /run/pageflux} (root), else the temp dir. */
    public static SoftDirtyLedger system() {
        Path run = Path.of("/run");
        return Files.isWritable(run) ? at(run.resolve("pageflux"))
                : at(Path.of(System.getProperty("java.io.tmpdir"), "pageflux-" + System.getProperty("user.name")));
    }

    public Path dir() {
        return dir;
    }

    /** The {@code dump_uptime} of the completed dump that last cleared the bits of {@code pid}, if known. */
    public OptionalLong lastClear(int pid) {
        Path file;
        try {
            file = file(pid);
        } catch (ProcessGoneException e) {
            return OptionalLong.empty();
        }
        try {
            String text = Files.readString(file, StandardCharsets.US_ASCII).trim();
            if (text.startsWith("cleared dump_uptime=")) {
                return OptionalLong.of(Long.parseLong(text.substring("cleared dump_uptime=".length())));
            }
            return OptionalLong.empty();
        } catch (NoSuchFileException e) {
            return OptionalLong.empty();
        } catch (IOException | NumberFormatException e) {
            return OptionalLong.empty(); // unreadable or damaged: unknown, so digests — always correct
        }
    }

    /**
     * {@code kernel}, but every clear is first recorded as {@code clearing} (a dump in progress): by
     * {@link SoftDirty.Kernel#prepareClear}, before the target is frozen, so that no file is written while it is
     * stopped; by {@link SoftDirty.Kernel#clear} itself when it was not prepared. A dump that fails after
     * preparing and before clearing leaves {@code clearing} too: the next iteration compares digests, which is
     * always correct.
     */
    public SoftDirty.Kernel tracking(SoftDirty.Kernel kernel) {
        Objects.requireNonNull(kernel, "kernel");
        return new SoftDirty.Kernel() {
            /** The record {@link #prepareClear} wrote for the next clear; null for none. */
            private volatile Prepared prepared;

            @Override
            public boolean supported() {
                return kernel.supported();
            }

            @Override
            public SoftDirty.Entries open(int pid) {
                return kernel.open(pid);
            }

            @Override
            public void prepareClear(int pid) {
                Path file = write(pid, "clearing");
                prepared = new Prepared(pid, file, identity(file));
                kernel.prepareClear(pid);
            }

            @Override
            public void clear(int pid) {
                Prepared p = prepared;
                prepared = null; // one prepared record covers one clear: a later one records itself again
                // one stat while frozen instead of a write: if anything replaced the record since (another dump of
                // the process completing in between), it is written again
                if (p == null || p.pid() != pid || !p.identity().equals(identity(p.file()))) {
                    write(pid, "clearing");
                }
                kernel.clear(pid);
            }
        };
    }

    /** A {@code clearing} record written ahead of a clear: which file, and its identity then. */
    private record Prepared(int pid, Path file, Object identity) {
    }

    /**
     * The file's inode and modification time (each write renames a new file into place), or an object equal to
     * nothing if it cannot be read.
     */
    private static Object identity(Path file) {
        try {
            BasicFileAttributes a = Files.readAttributes(file, BasicFileAttributes.class);
            return java.util.Arrays.asList(a.fileKey(), a.lastModifiedTime());
        } catch (IOException e) {
            return new Object();
        }
    }

    /** The dump of {@code pid} with {@code dumpUptimeMicros} cleared the bits and is complete. */
    public void completed(int pid, long dumpUptimeMicros) {
        write(pid, "cleared dump_uptime=" + dumpUptimeMicros);
    }

    private Path file(int pid) {
        ProcTask.Stat stat = ProcTask.stat(pid);
        if (stat == null || stat.exited()) {
            throw new ProcessGoneException(pid, "reason=exited file=/proc/" + pid + "/stat: the target is gone");
        }
        return dir.resolve("soft-dirty-" + pid + "-" + stat.startMicros());
    }

    /** Writes {@code line} as the record of {@code pid}, atomically; returns the file. */
    private Path write(int pid, String line) {
        Path file = file(pid);
        try {
            Files.createDirectories(dir);
            Path tmp = dir.resolve("." + file.getFileName() + ".tmp-" + ProcessHandle.current().pid());
            Files.writeString(tmp, line + "\n", StandardCharsets.US_ASCII);
            try {
                Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING);
            }
        } catch (IOException e) {
            throw new PagefluxException("cannot record the soft-dirty clear of pid=" + pid + ": file=" + file + ": "
                    + e.getMessage() + " (make the directory writable, or use --change-detection digest)", e);
        }
        return file;
    }

    @Override
    public String toString() {
        return "SoftDirtyLedger[" + dir + "]";
    }
}
