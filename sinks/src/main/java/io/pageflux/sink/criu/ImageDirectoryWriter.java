package io.pageflux.sink.criu;

import io.pageflux.sink.criu.proto.InventoryProtos.InventoryEntry;
import io.pageflux.sink.criu.proto.PagemapProtos.PagemapEntry;
import io.pageflux.sink.criu.proto.PagemapProtos.PagemapHead;
import io.pageflux.sink.file.DirectFileOutput;
import io.pageflux.sink.file.StagingBuffers;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.ThreadLocalRandom;
import java.util.stream.Stream;

/**
 * Writes one CRIU image directory (criu-formats.md §1): pagemaps, their pages files, optionally
 * {@code inventory.img} and a {@code parent} link. The low-level writer under
 * {@link CriuImageSink} and the page server. With {@link Options#withPagesFiles} the page data goes
 * to pages files someone else writes (the compressed image sink's {@code pages-<id>.img.zst}),
 * and this writer keeps the rest: pagemaps, inventory, parent link, commit and abort.
 *
 * <p><b>Atomicity.</b> Everything goes into a temporary sibling directory
 * {@code .<name>.partial-<random>} (a sibling, so a relative {@code parent} link means the same
 * thing before and after the rename). {@link #commit()} fsyncs every file and the directory and
 * renames it into place; {@link #abort()} — and any failed write — deletes it. So the final
 * directory either does not exist or is complete.
 *
 * <p><b>Memory.</b> Constant: per open pagemap one pending entry (runs are merged into it while
 * they are contiguous with equal flags) and a small pagemap write buffer; for all pages files
 * together one {@link StagingBuffers} (at most {@link StagingBuffers#DEFAULT_BUFFERS} ×
 * {@link StagingBuffers#BYTES_PER_BUFFER} of direct memory, allocated when a run needs staging,
 * whatever the number of pagemaps), freed when the writer commits or aborts.
 *
 * <p><b>Direct I/O.</b> By default pages files are written with {@code O_DIRECT}
 * ({@link DirectFileOutput}): a dump is written once and read later, so it should neither cost
 * the page cache's CPU time nor evict the machine's cache. Page-aligned runs of at least 256 KiB
 * (the pool's buffers hold whole pages) are written straight from the caller's buffer; smaller or
 * unaligned ones are batched through the staging buffer. Where the file system refuses
 * {@code O_DIRECT} the file goes through the page cache, with one warning line.
 * {@link Options#withDirectIo withDirectIo(false)} turns it off. The bytes are the same either way.
 *
 * <p><b>Threads.</b> Methods are synchronized on the writer: one thread writes, another may
 * {@link #abort()} at any time (cancel), which waits for a write in progress.
 */
public final class ImageDirectoryWriter implements AutoCloseable {

    /** The largest page count of one entry: {@code compat_nr_pages} is a u32, longer runs are split. */
    public static final long MAX_ENTRY_PAGES = 0xFFFF_FFFFL;

    private static final int PAGE = PageRun.PAGE_SIZE;
    private static final int KNOWN_FLAGS = PageFlags.PE_PARENT | PageFlags.PE_LAZY | PageFlags.PE_PRESENT;

    /**
     * How to write a directory. Immutable; {@code withX} returns a modified copy.
     */
    public static final class Options {
        /** First pages_id of a local dump. */
        public static final long LOCAL_FIRST_PAGES_ID = 1;
        /** First pages_id of images received by a page server ({@code 0x10000 + 1}). */
        public static final long PAGE_SERVER_FIRST_PAGES_ID = 0x10001;

        private static final Options DEFAULTS = new Options(LOCAL_FIRST_PAGES_ID, false, null, null, true, null, true);

        private final long firstPagesId;
        private final boolean force;
        private final Path parentLink;
        private final InventoryEntry inventory;
        private final boolean mergeRuns;
        private final PagesFileFactory pagesFiles;
        private final boolean directIo;

        private Options(long firstPagesId, boolean force, Path parentLink, InventoryEntry inventory,
                        boolean mergeRuns, PagesFileFactory pagesFiles, boolean directIo) {
            this.firstPagesId = firstPagesId;
            this.force = force;
            this.parentLink = parentLink;
            this.inventory = inventory;
            this.mergeRuns = mergeRuns;
            this.pagesFiles = pagesFiles;
            this.directIo = directIo;
        }

        /**
         * pages_id from 1, no overwrite, no parent link, no inventory, contiguous runs merged,
         * pages files with direct I/O.
         */
        public static Options defaults() {
            return DEFAULTS;
        }

        /** The pages_id of the first pagemap opened; later ones count up (§1.4). */
        public Options withFirstPagesId(long firstPagesId) {
            if (firstPagesId < 0 || firstPagesId > 0xFFFF_FFFFL) {
                throw new IllegalArgumentException("pages_id is a u32: firstPagesId=" + firstPagesId);
            }
            return new Options(firstPagesId, force, parentLink, inventory, mergeRuns, pagesFiles, directIo);
        }

        /** Replace an existing, non-empty output directory on commit (the CLI's {@code --force}). */
        public Options withForce(boolean force) {
            return new Options(firstPagesId, force, parentLink, inventory, mergeRuns, pagesFiles, directIo);
        }

        /**
         * Create a {@code parent} symlink with this target, e.g. {@code ../pd1}. CRIU writes it
         * relative to the image directory; {@code null} for none.
         */
        public Options withParentLink(Path target) {
            return new Options(firstPagesId, force, target, inventory, mergeRuns, pagesFiles, directIo);
        }

        /** Write this {@code inventory.img}; {@code null} for none (a page server writes none). */
        public Options withInventory(InventoryEntry inventory) {
            return new Options(firstPagesId, force, parentLink, inventory, mergeRuns, pagesFiles, directIo);
        }

        /**
         * Merge a run into the previous entry when it starts where that one ends and has the same
         * flags (as CRIU does). Off: one entry per {@code add} (still split at {@link #MAX_ENTRY_PAGES}).
         */
        public Options withMergeRuns(boolean mergeRuns) {
            return new Options(firstPagesId, force, parentLink, inventory, mergeRuns, pagesFiles, directIo);
        }

        /**
         * Page data written elsewhere: each pagemap's pages file is created by {@code factory}
         * (e.g. a compressed pages file) instead of {@code pages-<id>.img}. The writer keeps
         * everything else — pagemap entries, inventory, parent link, fsync, commit and abort —
         * and calls {@link PagesFile#finish()} on commit and {@link PagesFile#close()} on abort;
         * present runs are then {@link PagemapWriter#add added} without bytes, and the caller
         * writes their data into the pages file itself. {@code null}: plain pages files.
         */
        public Options withPagesFiles(PagesFileFactory factory) {
            return new Options(firstPagesId, force, parentLink, inventory, mergeRuns, factory, directIo);
        }

        /**
         * Write {@code pages-<id>.img} with {@code O_DIRECT}, bypassing the page cache (the
         * default), or through the page cache ({@code false}, the CLI's {@code --no-direct-io}).
         * Where the file system refuses {@code O_DIRECT} the page cache is used anyway, with one
         * warning line. Pages files from a {@link #withPagesFiles factory} follow their factory.
         */
        public Options withDirectIo(boolean directIo) {
            return new Options(firstPagesId, force, parentLink, inventory, mergeRuns, pagesFiles, directIo);
        }

        public boolean directIo() {
            return directIo;
        }

        public long firstPagesId() {
            return firstPagesId;
        }

        /** The factory given with {@link #withPagesFiles}, if any. */
        public Optional<PagesFileFactory> pagesFiles() {
            return Optional.ofNullable(pagesFiles);
        }

        public boolean force() {
            return force;
        }

        public Optional<Path> parentLink() {
            return Optional.ofNullable(parentLink);
        }

        public Optional<InventoryEntry> inventory() {
            return Optional.ofNullable(inventory);
        }

        public boolean mergeRuns() {
            return mergeRuns;
        }
    }

    /**
     * The pages file of one pagemap when its data is written by someone else
     * ({@link Options#withPagesFiles}). The directory writer owns its life cycle: it finishes it
     * on {@link #commit()} and closes it on {@link #abort()}; whoever writes into it reports a
     * failed write with {@link #writeFailed}.
     */
    public interface PagesFile {
        /** The file, inside {@link ImageDirectoryWriter#temporaryDirectory()}. */
        Path file();

        /** Bytes in the file so far. */
        long bytesWritten();

        /** Completes the file and fsyncs it (called once, on commit). */
        void finish() throws IOException;

        /** Closes it without completing it (on abort; the file is deleted with the directory). */
        void close() throws IOException;
    }

    /** Creates the pages file of a pagemap; see {@link Options#withPagesFiles}. */
    @FunctionalInterface
    public interface PagesFileFactory {
        /**
         * Creates the pages file for the pagemap {@code id} numbered {@code pagesId} in
         * {@code directory} (the writer's temporary directory).
         */
        PagesFile create(Path directory, PagemapId id, long pagesId) throws IOException;
    }

    private enum State { OPEN, COMMITTED, ABORTED }

    private final Path finalDir;
    private final Path tempDir;
    private final Options options;
    private final Map<PagemapId, PagemapWriter> pagemaps = new LinkedHashMap<>();
    /** The O_DIRECT staging memory of all pages files, released on commit or abort. */
    private final StagingBuffers staging = new StagingBuffers();
    private long nextPagesId;
    private State state = State.OPEN;
    private long bytesWritten;
    private long pages;
    private long entries;

    private ImageDirectoryWriter(Path finalDir, Path tempDir, Options options) {
        this.finalDir = finalDir;
        this.tempDir = tempDir;
        this.options = options;
        this.nextPagesId = options.firstPagesId;
    }

    /**
     * Starts writing {@code finalDir}: checks it, creates the temporary sibling directory, the
     * {@code parent} link and the inventory if the options ask for them. Missing parent
     * directories of {@code finalDir} are created.
     *
     * @throws ImageWriteException if {@code finalDir} exists and is not an empty directory (unless
     *                             {@link Options#withForce forced}), or its parent is not writable
     */
    public static ImageDirectoryWriter create(Path finalDir, Options options) {
        Objects.requireNonNull(options, "options");
        Path dir = finalDir.toAbsolutePath().normalize();
        Path parent = dir.getParent();
        if (parent == null || dir.getFileName() == null) {
            throw new ImageWriteException(dir, "cannot write an image directory at the file system root: dir=" + dir
                    + ": choose a directory below it");
        }
        checkTarget(dir, options.force);
        try {
            Files.createDirectories(parent);
        } catch (IOException e) {
            throw new ImageWriteException(parent, "cannot create the output's parent directory: dir=" + parent
                    + " cause=\"" + describe(e) + "\": choose a writable location", e);
        }
        Path temp = createTemp(parent, dir.getFileName().toString());
        ImageDirectoryWriter w = new ImageDirectoryWriter(dir, temp, options);
        synchronized (w) {
            if (options.parentLink != null) {
                Path link = temp.resolve(ImageFormat.PARENT_LINK);
                try {
                    Files.createSymbolicLink(link, options.parentLink);
                } catch (IOException e) {
                    throw w.fail(link, 0, e);
                }
            }
            if (options.inventory != null) {
                w.writeInventory(options.inventory);
            }
        }
        return w;
    }

    /** Whether {@code dir} exists as something other than an empty directory. */
    private static boolean occupied(Path dir) throws IOException {
        if (!Files.exists(dir, LinkOption.NOFOLLOW_LINKS)) {
            return false;
        }
        if (!Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
            return true;
        }
        try (Stream<Path> s = Files.list(dir)) {
            return s.findAny().isPresent();
        }
    }

    private static void checkTarget(Path dir, boolean force) {
        if (!Files.exists(dir, LinkOption.NOFOLLOW_LINKS) || force) {
            return;
        }
        if (!Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
            throw new ImageWriteException(dir, "output exists and is not a directory: dir=" + dir
                    + ": choose another output, or use --force (Options.withForce) to replace it");
        }
        long n;
        try (Stream<Path> s = Files.list(dir)) {
            n = s.count();
        } catch (IOException e) {
            throw new ImageWriteException(dir, "cannot read the output directory: dir=" + dir + " cause=\""
                    + describe(e) + "\": choose a readable, writable location", e);
        }
        if (n > 0) {
            throw new ImageWriteException(dir, "output directory is not empty: dir=" + dir + " entries=" + n
                    + ": choose a new or empty directory, or use --force (Options.withForce) to replace it");
        }
    }

    private static Path createTemp(Path parent, String name) {
        for (int attempt = 0; ; attempt++) {
            Path temp = parent.resolve("." + name + ".partial-"
                    + Long.toHexString(ThreadLocalRandom.current().nextLong() >>> 16));
            try {
                return Files.createDirectory(temp);
            } catch (FileAlreadyExistsException e) {
                if (attempt > 10) {
                    throw new ImageWriteException(temp, "cannot create a temporary directory: dir=" + temp
                            + ": remove stale .partial- directories next to the output", e);
                }
            } catch (IOException e) {
                throw new ImageWriteException(parent, "cannot create the output directory: dir=" + parent
                        + " tmp=" + temp.getFileName() + " cause=\"" + describe(e)
                        + "\": choose a writable location (check permissions and free space)", e);
            }
        }
    }

    private void writeInventory(InventoryEntry inventory) {
        Path file = tempDir.resolve(ImageFormat.INVENTORY_FILE);
        long written = 0;
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            written += writeFully(ch, ImageFormat.Kind.INVENTORY.header(), written);
            written += writeFully(ch, ByteBuffer.wrap(ImageFormat.frame(inventory)), written);
            ch.force(true);
            bytesWritten += written;
        } catch (IOException e) {
            throw fail(file, written, e);
        }
    }

    /**
     * The writer for {@code id}'s pagemap: created on first call (taking the next pages_id and
     * creating {@code pagemap-*.img} and {@code pages-<pages_id>.img}), the same writer afterwards.
     * Writers of different ids stay open together, so runs of a task and of shared objects may
     * interleave.
     *
     * @throws IllegalStateException after {@link #commit()} or {@link #abort()}
     * @throws ImageWriteException   if the files cannot be created (the directory is then aborted)
     */
    public synchronized PagemapWriter openPagemap(PagemapId id) {
        checkOpen("open " + id);
        PagemapWriter existing = pagemaps.get(id);
        if (existing != null) {
            return existing;
        }
        if (nextPagesId > 0xFFFF_FFFFL) {
            throw new IllegalStateException("pages_id counter exhausted: next=" + nextPagesId + " dir=" + finalDir);
        }
        PagemapWriter w = new PagemapWriter(id, nextPagesId++);
        pagemaps.put(id, w);
        w.start();
        return w;
    }

    /** The writer for {@code id} if {@link #openPagemap} was called for it. */
    public synchronized Optional<PagemapWriter> pagemap(PagemapId id) {
        return Optional.ofNullable(pagemaps.get(id));
    }

    /** Writers in the order they were opened (= pages_id order). */
    public synchronized List<PagemapWriter> pagemaps() {
        return List.copyOf(pagemaps.values());
    }

    /**
     * Writes the pending entries, fsyncs every file and the directory, and renames the temporary
     * directory to the final name (replacing an existing one when forced). Afterwards the writer
     * is closed. On failure the temporary directory is deleted and an {@link ImageWriteException}
     * thrown.
     *
     * @throws IllegalStateException if already committed or aborted
     */
    public synchronized void commit() {
        checkOpen("commit");
        for (PagemapWriter w : pagemaps.values()) {
            w.finish();
        }
        staging.release(); // every pages file is finished: none holds a buffer
        try {
            fsyncDirectory(tempDir);
        } catch (IOException e) {
            throw fail(tempDir, 0, e);
        }
        moveIntoPlace();
        state = State.COMMITTED;
        try {
            fsyncDirectory(finalDir.getParent());
        } catch (IOException ignored) {
            // the rename is done; a parent directory that cannot be fsynced (some FUSE file systems)
            // only weakens durability across a power cut, and CRIU does not fsync it either
        }
    }

    private void moveIntoPlace() {
        boolean occupied;
        try {
            occupied = occupied(finalDir);
        } catch (IOException e) {
            throw fail(finalDir, 0, e);
        }
        if (!occupied) {
            try {
                // rename(2) atomically replaces a missing or empty directory
                Files.move(tempDir, finalDir, StandardCopyOption.ATOMIC_MOVE);
                return;
            } catch (IOException e) {
                throw fail(finalDir, 0, e);
            }
        }
        if (!options.force) {
            throw fail(finalDir, 0, new IOException("the output appeared while writing and is not empty: "
                    + "use --force (Options.withForce) to replace it"));
        }
        // forced replacement of a non-empty directory (or a file): move the old one aside first,
        // so the final name never holds a mixture of old and new files
        Path old = finalDir.resolveSibling("." + finalDir.getFileName() + ".old-"
                + Long.toHexString(ThreadLocalRandom.current().nextLong() >>> 16));
        try {
            Files.move(finalDir, old, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw fail(finalDir, 0, e);
        }
        try {
            Files.move(tempDir, finalDir, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            try {
                Files.move(old, finalDir, StandardCopyOption.ATOMIC_MOVE);
            } catch (IOException restore) {
                e.addSuppressed(restore);
            }
            throw fail(finalDir, 0, e);
        }
        try {
            deleteRecursively(old);
        } catch (IOException e) {
            throw new ImageWriteException(old, "the new images are in place but the replaced directory could not "
                    + "be deleted: dir=" + old + " cause=\"" + describe(e) + "\": delete it by hand", e);
        }
    }

    /**
     * Closes all files and deletes the temporary directory. Does nothing after {@link #commit()}
     * or a previous abort.
     *
     * @throws ImageWriteException if the temporary directory could not be deleted (it says which)
     */
    public synchronized void abort() {
        if (state != State.OPEN) {
            return;
        }
        state = State.ABORTED;
        for (PagemapWriter w : pagemaps.values()) {
            w.closeQuietly();
        }
        staging.release();
        try {
            deleteRecursively(tempDir);
        } catch (IOException e) {
            throw new ImageWriteException(tempDir, "could not delete the partial image directory: dir=" + tempDir
                    + " cause=\"" + describe(e) + "\": delete it by hand", e);
        }
    }

    /** {@link #abort()} unless committed: use in try-with-resources around a commit. */
    @Override
    public void close() {
        abort();
    }

    /**
     * The staging memory of this directory's {@code pages-<id>.img} files (not of files from a
     * {@link Options#withPagesFiles factory}): for its counters.
     */
    public StagingBuffers stagingBuffers() {
        return staging;
    }

    /** Where the directory will be after {@link #commit()}. */
    public Path directory() {
        return finalDir;
    }

    /** Where files are written until {@link #commit()}. */
    public Path temporaryDirectory() {
        return tempDir;
    }

    public Options options() {
        return options;
    }

    public synchronized boolean isCommitted() {
        return state == State.COMMITTED;
    }

    public synchronized boolean isAborted() {
        return state == State.ABORTED;
    }

    /** Bytes written to all files so far, framing included (pending entries not yet). */
    public synchronized long bytesWritten() {
        long external = 0;
        for (PagemapWriter w : pagemaps.values()) {
            if (w.external != null) {
                external += w.external.bytesWritten();
            }
        }
        return bytesWritten + external;
    }

    /** Pages with PE_PRESENT added so far (their bytes are in pages files). */
    public synchronized long pages() {
        return pages;
    }

    /** Pagemap entries written so far (a pending, still mergeable entry is counted once written). */
    public synchronized long entries() {
        return entries;
    }

    private void checkOpen(String what) {
        if (state != State.OPEN) {
            throw new IllegalStateException("cannot " + what + ": image directory writer for dir=" + finalDir
                    + " is already " + (state == State.COMMITTED ? "committed" : "aborted"));
        }
    }

    /**
     * Aborts the directory and describes a failed write of {@code file}, a file the caller writes
     * into this directory (a {@link PagesFile}): the exception to throw.
     */
    public ImageWriteException writeFailed(Path file, long fileBytes, IOException e) {
        return fail(file, fileBytes, e);
    }

    /** Aborts everything and describes a failed write of {@code file}. */
    private ImageWriteException fail(Path file, long fileBytes, IOException e) {
        String abortProblem = "";
        try {
            abort();
        } catch (ImageWriteException cleanup) {
            e.addSuppressed(cleanup);
            abortProblem = " (and deleting it failed: delete it by hand)";
        }
        return new ImageWriteException(file, "cannot write image: file=" + file + " bytesWritten=" + fileBytes
                + " totalBytesWritten=" + bytesWritten + " cause=\"" + describe(e) + "\": "
                + remedy(e) + "; the partial directory " + tempDir + " was deleted" + abortProblem
                + " and dir=" + finalDir + " was not created", e);
    }

    private static String remedy(IOException e) {
        String m = String.valueOf(e.getMessage());
        if (m.contains("No space left") || m.contains("Disk quota exceeded")) {
            return "free space on that file system or write the dump elsewhere";
        }
        if (m.contains("Read-only file system") || e instanceof java.nio.file.AccessDeniedException) {
            return "choose a writable location";
        }
        return "check the output location";
    }

    private static String describe(IOException e) {
        if (e instanceof NoSuchFileException || e instanceof FileAlreadyExistsException
                || e instanceof java.nio.file.AccessDeniedException || e instanceof java.nio.file.NotDirectoryException) {
            String reason = ((java.nio.file.FileSystemException) e).getReason();
            return e.getClass().getSimpleName() + (reason == null ? "" : ": " + reason);
        }
        return String.valueOf(e.getMessage());
    }

    private static long writeFully(FileChannel ch, ByteBuffer src, long position) throws IOException {
        long start = position;
        while (src.hasRemaining()) {
            position += ch.write(src, position);
        }
        return position - start;
    }

    private static void fsyncDirectory(Path dir) throws IOException {
        // opening a directory read-only and fsyncing it is how Linux makes renames/creations durable
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        }
    }

    /** Deletes a directory tree without following symlinks (a {@code parent} link goes, not its target). */
    public static void deleteRecursively(Path root) throws IOException {
        if (!Files.exists(root, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        // walkFileTree does not follow symlinks: the parent link is deleted, not its target
        Files.walkFileTree(root, new SimpleFileVisitor<>() {
            @Override
            public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
                Files.delete(file);
                return FileVisitResult.CONTINUE;
            }

            @Override
            public FileVisitResult postVisitDirectory(Path dir, IOException exc) throws IOException {
                if (exc != null) {
                    throw exc;
                }
                Files.delete(dir);
                return FileVisitResult.CONTINUE;
            }
        });
    }

    /**
     * Appends the entries of one pagemap ({@code pagemap-*.img}) and the bytes of its present
     * pages ({@code pages-<pages_id>.img}). Obtained from {@link #openPagemap}; valid until the
     * directory is committed or aborted. Calls are serialized with the directory writer's.
     */
    public final class PagemapWriter {
        private final PagemapId id;
        private final long pagesId;
        private final Path pagemapFile;
        private final Path pagesFile;
        private FileChannel pagemapChannel;
        private DirectFileOutput pagesOutput;
        /** The pages file when its data is written elsewhere ({@link Options#withPagesFiles}), else null. */
        private PagesFile external;
        private final ByteBuffer pagemapBuffer = ByteBuffer.allocate(8192);
        private long pagemapPosition;
        private long pagesPosition;

        private boolean hasPending;
        private long pendingVaddr;
        private long pendingPages;
        private int pendingFlags;

        private boolean hasAny;
        private long lastByte; // address of the last byte of the last run (unsigned)

        /** Bytes appended by the caller ({@link #appendedElsewhere}) not yet claimed by a run. */
        private long unclaimed;
        private long writerPages;
        private long writerEntries;
        private boolean finished;

        private PagemapWriter(PagemapId id, long pagesId) {
            this.id = id;
            this.pagesId = pagesId;
            this.pagemapFile = tempDir.resolve(id.pagemapFileName());
            this.pagesFile = tempDir.resolve(ImageDirectoryWriter.pagesFileName(pagesId));
        }

        private void start() {
            try {
                pagemapChannel = FileChannel.open(pagemapFile, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
            } catch (IOException e) {
                throw fail(pagemapFile, 0, e);
            }
            if (options.pagesFiles != null) {
                try {
                    external = options.pagesFiles.create(tempDir, id, pagesId);
                } catch (IOException e) {
                    throw fail(tempDir, 0, new IOException("cannot create the pages file of pagemap=" + id
                            + " pages_id=" + pagesId + ": " + e.getMessage(), e));
                }
            } else {
                try {
                    pagesOutput = new DirectFileOutput(pagesFile, options.directIo, staging);
                } catch (IOException e) {
                    throw fail(pagesFile, 0, e);
                }
            }
            append(ImageFormat.Kind.PAGEMAP.header());
            append(ByteBuffer.wrap(ImageFormat.frame(PagemapHead.newBuilder().setPagesId((int) pagesId).build())));
        }

        /**
         * Appends a run of {@code nrPages} pages at {@code vaddr} (an address in the task, or an
         * offset inside a shared object) with CRIU flags. Runs must come in ascending address order
         * without overlap. A run that continues the previous one with the same flags extends its
         * entry (unless merging is off); entries longer than {@link #MAX_ENTRY_PAGES} are split.
         *
         * @param bytes the pages' bytes ({@code nrPages * 4096}, from position to limit; consumed)
         *              when {@code flags} has {@link PageFlags#PE_PRESENT}, else {@code null}; always
         *              {@code null} when page data is written elsewhere ({@link Options#withPagesFiles})
         * @throws IllegalArgumentException if the run is out of order, overlaps, is unaligned, or
         *                                  flags and bytes do not match (nothing is written)
         * @throws ImageWriteException      if writing fails (the whole directory is then aborted)
         */
        public void add(long vaddr, long nrPages, int flags, ByteBuffer bytes) {
            synchronized (ImageDirectoryWriter.this) {
                checkOpen("add to " + id);
                addRun(vaddr, nrPages, flags, bytes, false);
            }
        }

        /** {@code appended}: a present run whose bytes are in the pages file already ({@link #addAppended}). */
        private void addRun(long vaddr, long nrPages, int flags, ByteBuffer bytes, boolean appended) {
            if (finished) {
                throw new IllegalStateException("pagemap " + id + " is finished: dir=" + finalDir);
            }
            validate(vaddr, nrPages, flags, bytes, appended);
            if (appended) {
                writerPages += nrPages;
                pages += nrPages;
            } else if (external != null && PageFlags.has(flags, PageFlags.PE_PRESENT)) {
                writerPages += nrPages; // the caller writes their data into the external pages file
                pages += nrPages;
            } else if (bytes != null) {
                try {
                    pagesOutput.write(bytes);
                } catch (IOException e) {
                    throw fail(pagesFile, pagesPosition, e);
                }
                int n = bytes.remaining();
                bytes.position(bytes.limit()); // consumed, as documented
                pagesPosition += n;
                bytesWritten += n;
                writerPages += nrPages;
                pages += nrPages;
            }
            if (hasPending && options.mergeRuns && flags == pendingFlags
                    && vaddr == pendingVaddr + pendingPages * PAGE) {
                pendingPages += nrPages;
            } else {
                emitPending();
                hasPending = true;
                pendingVaddr = vaddr;
                pendingPages = nrPages;
                pendingFlags = flags;
            }
            hasAny = true;
            lastByte = vaddr + nrPages * PAGE - 1;
        }

        private void validate(long vaddr, long nrPages, int flags, ByteBuffer bytes, boolean appended) {
            if (nrPages <= 0) {
                throw new IllegalArgumentException("a run has at least one page: " + describeRun(vaddr, nrPages, flags));
            }
            if (vaddr % PAGE != 0) {
                throw new IllegalArgumentException("vaddr is not page aligned: " + describeRun(vaddr, nrPages, flags));
            }
            long maxPages = vaddr == 0 ? (1L << 52) : Long.divideUnsigned(-vaddr, PAGE);
            if (Long.compareUnsigned(nrPages, maxPages) > 0) {
                throw new IllegalArgumentException("run goes past the end of the address space: " + describeRun(vaddr, nrPages, flags));
            }
            if ((flags & ~KNOWN_FLAGS) != 0 || (flags & KNOWN_FLAGS) == 0) {
                throw new IllegalArgumentException("flags must be a combination of PE_PARENT, PE_LAZY, PE_PRESENT: "
                        + describeRun(vaddr, nrPages, flags));
            }
            boolean present = PageFlags.has(flags, PageFlags.PE_PRESENT);
            if (present && PageFlags.has(flags, PageFlags.PE_PARENT)) {
                throw new IllegalArgumentException("PE_PRESENT and PE_PARENT exclude each other: " + describeRun(vaddr, nrPages, flags));
            }
            if (appended) {
                // the bytes are in the pages file already (addAppended checked their count)
            } else if (external != null) {
                if (bytes != null) {
                    throw new IllegalArgumentException("page data goes to " + external.file().getFileName()
                            + ", written by the caller (Options.withPagesFiles): add runs without bytes: " + describeRun(vaddr, nrPages, flags));
                }
            } else if (present != (bytes != null)) {
                throw new IllegalArgumentException((present ? "PE_PRESENT needs the pages' bytes" :
                        "only PE_PRESENT runs carry bytes") + ": " + describeRun(vaddr, nrPages, flags));
            }
            if (present && bytes != null && bytes.remaining() != nrPages * PAGE) {
                throw new IllegalArgumentException("bytes=" + bytes.remaining() + " but the run needs "
                        + nrPages * PAGE + ": " + describeRun(vaddr, nrPages, flags));
            }
            if (hasAny && Long.compareUnsigned(vaddr, lastByte) <= 0) {
                throw new IllegalArgumentException(String.format("run out of order: %s starts at or before the end "
                        + "of the previous run (last byte 0x%x); runs of one pagemap must come in ascending "
                        + "address order without overlap", describeRun(vaddr, nrPages, flags), lastByte));
            }
        }

        /** Only built when a run is refused: add() is called for every socket read of a page server. */
        private String describeRun(long vaddr, long nrPages, int flags) {
            return String.format("pagemap=%s vaddr=0x%x pages=%d flags=%s", id, vaddr, nrPages,
                    PageFlags.describe(flags));
        }

        private void emitPending() {
            if (!hasPending) {
                return;
            }
            long vaddr = pendingVaddr;
            long left = pendingPages;
            while (left > 0) {
                long n = Math.min(left, MAX_ENTRY_PAGES);
                PagemapEntry e = PagemapEntry.newBuilder()
                        .setVaddr(vaddr)
                        // both counts: field 2 for CRIU <= 4.1 and crit 3.17, field 5 for CRIU 4.2
                        .setCompatNrPages((int) n)
                        .setFlags(pendingFlags)
                        .setNrPages(n)
                        .build();
                append(ByteBuffer.wrap(ImageFormat.frame(e)));
                writerEntries++;
                entries++;
                vaddr += n * PAGE;
                left -= n;
            }
            hasPending = false;
        }

        /** Buffers small pagemap writes; spills to the file when the buffer is full. */
        private void append(ByteBuffer src) {
            if (src.remaining() > pagemapBuffer.remaining()) {
                flushPagemap();
            }
            if (src.remaining() > pagemapBuffer.capacity()) {
                writePagemap(src);
            } else {
                pagemapBuffer.put(src);
            }
        }

        private void flushPagemap() {
            pagemapBuffer.flip();
            writePagemap(pagemapBuffer);
            pagemapBuffer.clear();
        }

        private void writePagemap(ByteBuffer src) {
            try {
                long n = writeFully(pagemapChannel, src, pagemapPosition);
                pagemapPosition += n;
                bytesWritten += n;
            } catch (IOException e) {
                throw fail(pagemapFile, pagemapPosition, e);
            }
        }

        /** Writes the pending entry, fsyncs and closes both files (on commit). */
        private void finish() {
            if (finished) {
                return;
            }
            if (unclaimed != 0) {
                // bytes in the pages file that no pagemap entry describes: the images would not restore
                throw fail(pagesFile, pagesPosition, new IOException("pages file holds unclaimed_bytes=" + unclaimed
                        + " appended without a run (a page server session that ended inside a spliced run)"));
            }
            emitPending();
            flushPagemap();
            try {
                pagemapChannel.force(true);
                pagemapChannel.close();
            } catch (IOException e) {
                throw fail(pagemapFile, pagemapPosition, e);
            }
            if (external != null) {
                try {
                    external.finish();
                } catch (IOException e) {
                    throw fail(external.file(), external.bytesWritten(), e);
                }
            } else {
                try {
                    pagesOutput.finish(); // the staged rest, then fsync
                } catch (IOException e) {
                    throw fail(pagesFile, pagesPosition, e);
                }
            }
            finished = true;
        }

        private void closeQuietly() {
            for (AutoCloseable c : new AutoCloseable[] {pagemapChannel, pagesOutput}) {
                if (c != null) {
                    try {
                        c.close();
                    } catch (Exception ignored) {
                        // the files are deleted next
                    }
                }
            }
            if (external != null) {
                try {
                    external.close();
                } catch (IOException ignored) {
                    // deleted next
                }
            }
        }

        /**
         * Where the next present page's bytes go in this pagemap's pages file, for a caller that writes
         * them itself through its own descriptor ({@code splice(2)}): the file and the offset, after
         * everything staged was written. Then report the bytes with {@link #appendedElsewhere} and the
         * runs they belong to with {@link #addAppended}. Only for pages files written through the page
         * cache ({@link #directIo()} false, not {@link Options#withPagesFiles}).
         *
         * @throws IllegalStateException    if the pages file is written with O_DIRECT or elsewhere
         * @throws ImageWriteException      if writing the staged bytes fails
         */
        public long appendOffset() {
            synchronized (ImageDirectoryWriter.this) {
                checkOpen("append to " + id);
                if (external != null || finished) {
                    throw new IllegalStateException("pages of " + id + " take no appends: "
                            + (finished ? "the pagemap is finished" : "written elsewhere (Options.withPagesFiles)"));
                }
                try {
                    return pagesOutput.appendOffset();
                } catch (IOException e) {
                    throw fail(pagesFile, pagesPosition, e);
                }
            }
        }

        /** The pages file (in the temporary directory) that {@link #appendOffset()} refers to. */
        public Path pagesFile() {
            return pagesFile;
        }

        /** Counts {@code bytes} the caller wrote at {@link #appendOffset()}; they belong to runs added next with {@link #addAppended}. */
        public void appendedElsewhere(long bytes) {
            synchronized (ImageDirectoryWriter.this) {
                checkOpen("append to " + id);
                pagesOutput.appendedElsewhere(bytes);
                pagesPosition += bytes;
                bytesWritten += bytes;
                unclaimed += bytes;
            }
        }

        /**
         * Adds a present run whose bytes are already in the pages file ({@link #appendedElsewhere});
         * otherwise as {@link #add}.
         *
         * @throws IllegalArgumentException as {@link #add}, or when fewer than {@code nrPages} pages
         *                                  were appended and not yet claimed by a run
         */
        public void addAppended(long vaddr, long nrPages, int flags) {
            synchronized (ImageDirectoryWriter.this) {
                checkOpen("add to " + id);
                if (!PageFlags.has(flags, PageFlags.PE_PRESENT) || nrPages <= 0 || nrPages > unclaimed / PAGE) {
                    throw new IllegalArgumentException("a run added after its bytes must be PE_PRESENT and within "
                            + "the bytes appended: unclaimed_bytes=" + unclaimed + " " + describeRun(vaddr, nrPages, flags));
                }
                addRun(vaddr, nrPages, flags, null, true);
                unclaimed -= nrPages * PAGE;
            }
        }

        public PagemapId id() {
            return id;
        }

        /** The pages_id in this pagemap's head: its bytes are in {@code pages-<pagesId>.img}. */
        public long pagesId() {
            return pagesId;
        }

        /** File name of the pagemap, e.g. {@code pagemap-42.img}. */
        public String pagemapFileName() {
            return pagemapFile.getFileName().toString();
        }

        /** File name of the pages file, e.g. {@code pages-1.img} (or the {@link PagesFile}'s). */
        public String pagesFileName() {
            return (external != null ? external.file() : pagesFile).getFileName().toString();
        }

        /**
         * Whether this pagemap's {@code pages-<id>.img} is being written with {@code O_DIRECT}:
         * false when turned off ({@link Options#withDirectIo}), refused by the file system, or
         * written elsewhere ({@link Options#withPagesFiles}).
         */
        public boolean directIo() {
            synchronized (ImageDirectoryWriter.this) {
                return pagesOutput != null && pagesOutput.direct();
            }
        }

        /**
         * Bytes of this pagemap's pages file written straight from the callers' buffers, without a
         * copy (page-aligned runs of at least {@link DirectFileOutput#PASS_THROUGH_BYTES}).
         */
        public long pagesBytesPassedThrough() {
            synchronized (ImageDirectoryWriter.this) {
                return pagesOutput == null ? 0 : pagesOutput.bytesPassedThrough();
            }
        }

        /** Pages with PE_PRESENT added to this pagemap. */
        public long pages() {
            synchronized (ImageDirectoryWriter.this) {
                return writerPages;
            }
        }

        /** Entries written to this pagemap (the pending one is written on the next non-contiguous run or commit). */
        public long entries() {
            synchronized (ImageDirectoryWriter.this) {
                return writerEntries;
            }
        }

        @Override
        public String toString() {
            return "PagemapWriter[" + id + " pages_id=" + pagesId + "]";
        }
    }

    /** {@code pages-<pagesId>.img}. */
    public static String pagesFileName(long pagesId) {
        return "pages-" + pagesId + ".img";
    }

    @Override
    public String toString() {
        return "ImageDirectoryWriter[" + finalDir + " " + state + "]";
    }
}
