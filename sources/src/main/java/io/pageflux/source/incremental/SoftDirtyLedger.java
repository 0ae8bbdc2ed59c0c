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
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Objects;
import java.util.OptionalLong;
import java.util.Set;

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
 * <p>Where: the {@link #system()} ledger writes to {@code /run/pageflux} when it may (root), else to
 * {@code $TMPDIR/pageflux-USER}. Root and the process's owner may both dump one process, so it reads every
 * place either could have written — {@code /run/pageflux}, its own directory and the temp directory of the
 * process's owner — and believes the record written last (newest modification time); when the newest
 * records of two places are equally old and disagree, it knows nothing, so digests.
 */
public final class SoftDirtyLedger {

    private static final Path RUN_DIR = Path.of("/run", "pageflux");

    /** Where this ledger writes. */
    private final Path dir;
    /** Whether the temp dir of the process's owner is read too (the system ledger: root vs the owner). */
    private final boolean readOtherUsers;
    /** Other ledgers' directories that may hold a newer record of the same process. */
    private final List<Path> alsoRead;

    SoftDirtyLedger(Path dir, boolean readOtherUsers, List<Path> alsoRead) {
        this.dir = Objects.requireNonNull(dir, "dir");
        this.readOtherUsers = readOtherUsers;
        this.alsoRead = List.copyOf(alsoRead);
    }

    /** A ledger in {@code dir} only (created when first written). */
    public static SoftDirtyLedger at(Path dir) {
        return new SoftDirtyLedger(dir, false, List.of());
    }

    /**
     * The ledger shared by every pageflux of this machine: writes to {@code /run/pageflux} (root), else to
     * the temp dir; reads those of root and of the process's owner too.
     */
    public static SoftDirtyLedger system() {
        Path own = Files.isWritable(RUN_DIR.getParent()) ? RUN_DIR : userDir(System.getProperty("user.name"));
        return new SoftDirtyLedger(own, true, List.of(RUN_DIR));
    }

    private static Path userDir(String user) {
        return Path.of(System.getProperty("java.io.tmpdir"), "pageflux-" + user);
    }

    public Path dir() {
        return dir;
    }

    /** The {@code dump_uptime} of the completed dump that last cleared the bits of {@code pid}, if known. */
    public OptionalLong lastClear(int pid) {
        Path name;
        try {
            name = file(pid).getFileName();
        } catch (ProcessGoneException e) {
            return OptionalLong.empty();
        }
        // the newest record of the process in every place a pageflux of this machine may have written
        FileTime newest = null;
        Set<String> newestTexts = new LinkedHashSet<>();
        for (Path place : placesToRead(pid)) {
            Path file = place.resolve(name);
            try {
                FileTime modified = Files.getLastModifiedTime(file);
                String text = Files.readString(file, StandardCharsets.US_ASCII).trim();
                int order = newest == null ? 1 : modified.compareTo(newest);
                if (order > 0) {
                    newest = modified;
                    newestTexts.clear();
                }
                if (order >= 0) {
                    newestTexts.add(text);
                }
            } catch (NoSuchFileException e) {
                // nothing recorded there
            } catch (IOException e) {
                return OptionalLong.empty(); // unreadable: unknown, so digests — always correct
            }
        }
        if (newestTexts.size() != 1) {
            return OptionalLong.empty(); // none, or two places equally new and disagreeing
        }
        String text = newestTexts.iterator().next();
        if (!text.startsWith("cleared dump_uptime=")) {
            return OptionalLong.empty();
        }
        try {
            return OptionalLong.of(Long.parseLong(text.substring("cleared dump_uptime=".length())));
        } catch (NumberFormatException e) {
            return OptionalLong.empty(); // damaged: unknown, so digests
        }
    }

    /** This ledger's directory, then the others that may hold a record of {@code pid}. */
    List<Path> placesToRead(int pid) {
        Set<Path> places = new LinkedHashSet<>();
        places.add(dir);
        places.addAll(alsoRead);
        if (readOtherUsers) {
            try {
                // root may dump the process of a user whose own pageflux writes to its temp dir
                places.add(userDir(Files.getOwner(Path.of("/proc/" + pid)).getName()));
            } catch (IOException | UnsupportedOperationException e) {
                // gone or unreadable: the places known already are all there is to read
            }
        }
        return new ArrayList<>(places);
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
