package io.pageflux.sink.pageserver;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.ImageDirectoryWriter;
import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import reactor.util.Logger;
import reactor.util.Loggers;

/**
 * The server directory {@code DIR}: one server at a time (a lock file), what a crashed server left
 * behind (dealt with at start), and the completed sessions in the order they completed (for
 * {@link PageServer.Builder#chain chaining} and GET).
 *
 * <p>Names in {@code DIR}: visible directories are completed sessions; {@code .incoming-<seq>} is a
 * session whose CLOSE was received and whose images were committed (the writer's rename out of its
 * temporary directory is its completion marker: files fsynced first) but not yet published;
 * {@code ..incoming-<seq>.partial-<hex>} is the writer's temporary directory of a session still
 * receiving (or cut off by a crash: never complete).
 */
final class SessionDirectories implements AutoCloseable {

    private static final Logger LOG = Loggers.getLogger(SessionDirectories.class);

    static final String LOCK_FILE = ".pageflux-page-server.lock";
    static final String INCOMING_PREFIX = ".incoming-";
    private static final Pattern INCOMING = Pattern.compile("\\.incoming-(\\d+)");
    private static final Pattern PARTIAL = Pattern.compile("\\.\\.incoming-\\d+\\.partial-[0-9a-f]+");

    private final Path directory;
    private final FileChannel lockChannel;
    private final FileLock lock;
    /** Completed sessions, oldest first: earlier runs by modification time, then this run's in completion order. */
    private final List<Path> completed = new ArrayList<>();
    private final List<Leftover> leftovers;

    private SessionDirectories(Path directory, FileChannel lockChannel, FileLock lock, List<Leftover> leftovers) {
        this.directory = directory;
        this.lockChannel = lockChannel;
        this.lock = lock;
        this.leftovers = List.copyOf(leftovers);
    }

    /**
     * Takes {@code DIR}'s lock, deals with leftovers of a crashed server and indexes the completed
     * sessions already there.
     *
     * @throws PageServerException another server uses the directory, or it cannot be read
     */
    static SessionDirectories open(ServerConfig config) {
        Path dir = config.directory();
        FileChannel channel;
        FileLock lock;
        try {
            channel = FileChannel.open(dir.resolve(LOCK_FILE), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
        } catch (IOException e) {
            throw new PageServerException("cannot create the lock file: file=" + dir.resolve(LOCK_FILE) + " cause=" + e
                    + "; choose a writable directory", e);
        }
        try {
            lock = channel.tryLock();
        } catch (IOException | OverlappingFileLockException e) {
            lock = null;
        }
        if (lock == null) {
            closeQuietly(channel);
            throw new PageServerException("another page server uses dir=" + dir + " (it holds " + LOCK_FILE
                    + "): give each server its own --dir");
        }
        try {
            List<Leftover> leftovers = recover(config);
            SessionDirectories d = new SessionDirectories(dir, channel, lock, leftovers);
            d.indexExisting();
            return d;
        } catch (IOException | RuntimeException e) {
            closeQuietly(channel);
            throw new PageServerException("cannot read the page server directory: dir=" + dir + " cause=" + e
                    + "; check its permissions", e);
        }
    }

    /** What was done at start with what a previous server left behind, in directory order. */
    List<Leftover> leftovers() {
        return leftovers;
    }

    private static List<Leftover> recover(ServerConfig config) throws IOException {
        Path dir = config.directory();
        List<Path> names;
        try (Stream<Path> s = Files.list(dir)) {
            names = s.sorted().toList();
        }
        List<Leftover> done = new ArrayList<>();
        for (Path p : names) {
            String name = p.getFileName().toString();
            if (!Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)) {
                continue;
            }
            Matcher incoming = INCOMING.matcher(name);
            if (incoming.matches()) {
                done.add(recoverCommitted(config, p, incoming.group(1)));
            } else if (PARTIAL.matcher(name).matches()) {
                done.add(delete(p, "an unfinished session (no CLOSE received before the server stopped)"));
            }
        }
        for (Leftover l : done) {
            LOG.warn("page server start: {}", l.describe());
        }
        return done;
    }

    /** A committed, unpublished session: published if its images check out, else deleted. */
    private static Leftover recoverCommitted(ServerConfig config, Path incoming, String seq) {
        ImageDirectory images;
        try {
            images = ImageDirectory.open(incoming).verify();
        } catch (IOException | RuntimeException e) {
            return delete(incoming, "committed but its images do not check out: " + e.getMessage());
        }
        String pid = images.pagemaps().stream().map(PagemapImage::id).filter(id -> id.kind() == PagemapId.Kind.TASK)
                .findFirst().map(id -> Long.toString(id.id())).orElse("nopid");
        Instant when;
        try {
            when = Files.getLastModifiedTime(incoming, LinkOption.NOFOLLOW_LINKS).toInstant();
        } catch (IOException e) {
            when = Instant.now();
        }
        try {
            Path target = publish(config, incoming, config.sessionName(pid, when, "r" + seq));
            return new Leftover(incoming, Leftover.Action.PUBLISHED, Optional.of(target),
                    "CLOSE was received and the images were committed before the server stopped; pages="
                            + images.presentPages() + " entries=" + images.entries());
        } catch (IOException | RuntimeException e) {
            return new Leftover(incoming, Leftover.Action.KEPT, Optional.empty(),
                    "committed, but it could not be published: cause=\"" + e + "\"; rename it by hand");
        }
    }

    private static Leftover delete(Path p, String why) {
        try {
            ImageDirectoryWriter.deleteRecursively(p);
            return new Leftover(p, Leftover.Action.DELETED, Optional.empty(), why);
        } catch (IOException e) {
            return new Leftover(p, Leftover.Action.KEPT, Optional.empty(), why + "; deleting it failed: cause=\"" + e
                    + "\": delete it by hand");
        }
    }

    /**
     * Renames a committed hidden directory to {@code base} (or {@code base-2}, {@code base-3}, ... when
     * taken) and syncs DIR.
     */
    static synchronized Path publish(ServerConfig config, Path incoming, String base) throws IOException {
        // synchronized: sessions finish on different workers, and two with the same base name (a template
        // without {seq}) must not both find it free
        Path target = config.directory().resolve(base);
        for (int n = 2; Files.exists(target, LinkOption.NOFOLLOW_LINKS); n++) {
            target = config.directory().resolve(base + "-" + n);
        }
        ServerConfig.checkInside(config.directory(), target);
        Files.move(incoming, target, StandardCopyOption.ATOMIC_MOVE);
        try (FileChannel d = FileChannel.open(config.directory(), StandardOpenOption.READ)) {
            d.force(true);
        } catch (IOException e) {
            // the rename is done and the images were synced before it: a directory that cannot be synced
            // (some file systems refuse) must not turn a published session into a failed one
            LOG.warn("page server: cannot sync dir={} after publishing {}: cause=\"{}\"", config.directory(),
                    target.getFileName(), e.getMessage());
        }
        return target;
    }

    private void indexExisting() throws IOException {
        List<Path> dirs;
        try (Stream<Path> s = Files.list(directory)) {
            dirs = s.filter(p -> !p.getFileName().toString().startsWith("."))
                    .filter(p -> Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)).toList();
        }
        List<Path> sorted = new ArrayList<>(dirs);
        sorted.sort(Comparator.comparing((Path p) -> {
            try {
                return Files.getLastModifiedTime(p, LinkOption.NOFOLLOW_LINKS).toInstant();
            } catch (IOException e) {
                return Instant.EPOCH;
            }
        }).thenComparing(Path::toString));
        synchronized (completed) {
            completed.addAll(sorted);
        }
    }

    /** Records a session directory this server just published. */
    void completed(Path sessionDir) {
        synchronized (completed) {
            completed.add(sessionDir);
        }
    }

    /**
     * The most recently completed session directory that holds {@code pagemap}'s pagemap, if it
     * still exists.
     */
    Optional<Path> newestWith(PagemapId pagemap) {
        List<Path> snapshot;
        synchronized (completed) {
            snapshot = List.copyOf(completed);
        }
        for (int i = snapshot.size() - 1; i >= 0; i--) {
            Path d = snapshot.get(i);
            if (Files.isRegularFile(d.resolve(pagemap.pagemapFileName()), LinkOption.NOFOLLOW_LINKS)) {
                return Optional.of(d);
            }
        }
        return Optional.empty();
    }

    /**
     * Releases the lock. The lock file stays: the lock, not the file, keeps other servers out, and
     * deleting it would let a server that opened the old file just before and one that creates a new
     * file lock two different inodes, and both use DIR.
     */
    @Override
    public void close() {
        try {
            lock.release();
        } catch (IOException ignored) {
            // closing the channel releases it too
        }
        closeQuietly(lockChannel);
    }

    private static void closeQuietly(FileChannel channel) {
        try {
            channel.close();
        } catch (IOException ignored) {
            // nothing more to do
        }
    }
}
