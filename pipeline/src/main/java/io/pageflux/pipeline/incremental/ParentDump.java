package io.pageflux.pipeline.incremental;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.source.PagemapId;
import io.pageflux.source.incremental.DigestFileException;
import io.pageflux.source.incremental.PageDigests;
import io.pageflux.source.incremental.PidReuse;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.stream.Collectors;

/**
 * The previous dump an incremental dump builds on, checked, with the page digests that decide which
 * pages are unchanged.
 *
 * <p><b>Errors</b> ({@link ParentDumpException}): the directory is missing, is not a dump (no
 * {@code inventory.img} or unreadable images), or is a dump of another pid.
 *
 * <p><b>Fallbacks</b> (the dump goes on, writes every page, and links the parent anyway; the reason is
 * in {@link #fallback()}): the pid now belongs to a process that started after the parent dump (pid
 * reuse, decided as CRIU does from the start time and the parent's {@code dump_uptime}); the parent has
 * no {@code dump_uptime}; the parent has no usable {@code pageflux-digests.bin} (made by CRIU, damaged,
 * or describing another dump). Writing every page is always correct; it only saves nothing.
 *
 * @param dir         the parent directory, or {@code null} for an in-memory parent (a page-server
 *                    iteration of {@code migrate}: the images are on the server)
 * @param dumpUptime  the parent's {@code dump_uptime}
 * @param digests     the digests to compare against ({@link PageDigests#empty()} when falling back)
 * @param fallback    why no page can be a hole, if so
 */
public record ParentDump(Path dir, long dumpUptime, PageDigests digests, Optional<String> fallback) {

    public ParentDump {
        Objects.requireNonNull(digests, "digests");
        Objects.requireNonNull(fallback, "fallback");
    }

    /**
     * Checks {@code dir} as the parent of a dump of {@code pid} and loads its digests.
     *
     * @throws ParentDumpException missing, not a dump, or of another pid
     */
    public static ParentDump open(Path dir, int pid) {
        if (!Files.exists(dir)) {
            throw new ParentDumpException(dir, "parent=" + dir + " does not exist: name the directory of an earlier dump"
                    + " of pid=" + pid + " (e.g. made by pageflux pre-dump --out)");
        }
        if (!Files.isDirectory(dir)) {
            throw new ParentDumpException(dir, "parent=" + dir + " is not a directory: name the directory of an earlier"
                    + " dump of pid=" + pid);
        }
        if (!Files.exists(dir.resolve("inventory.img")) && Files.exists(dir.resolve(PageDigests.FILE_NAME))) {
            throw new ParentDumpException(dir, "parent=" + dir + " holds only the page digests of a pre-dump sent to a"
                    + " page server (pre-dump --state), no images: local images cannot link to it; pass it as --state"
                    + " to the next pre-dump --to tcp://HOST:PORT, or name a directory of images");
        }
        ImageDirectory images;
        try {
            images = ImageDirectory.open(dir);
        } catch (IOException | RuntimeException e) {
            throw new ParentDumpException(dir, "parent=" + dir + " is not a readable dump: " + e.getMessage(), e);
        }
        if (images.inventory().isEmpty()) {
            throw new ParentDumpException(dir, "parent=" + dir + " is not a dump: it has no inventory.img");
        }
        PagemapId task = PagemapId.task(pid);
        if (images.pagemap(task).isEmpty()) {
            String others = images.pagemaps().stream().map(PagemapImage::id)
                    .filter(id -> id.kind() == PagemapId.Kind.TASK).map(id -> Long.toString(id.id()))
                    .collect(Collectors.joining(","));
            if (!others.isEmpty()) {
                throw new ParentDumpException(dir, "parent=" + dir + " is a dump of pid=" + others + ", not of pid=" + pid
                        + ": pick a parent dumped from this process, or dump without --parent");
            }
            throw new ParentDumpException(dir, "parent=" + dir + " is not a dump of pid=" + pid + ": it has no "
                    + task.pagemapFileName());
        }
        OptionalLong uptime = images.inventory().get().dumpUptime();
        if (uptime.isEmpty()) {
            return new ParentDump(dir, 0, PageDigests.empty(), Optional.of("parent=" + dir + " has no dump_uptime in its"
                    + " inventory.img: pid reuse cannot be ruled out, so every page is written"));
        }
        PidReuse reuse = PidReuse.check(pid, uptime.getAsLong());
        if (reuse.reused()) {
            return new ParentDump(dir, uptime.getAsLong(), PageDigests.empty(), Optional.of("the pid was reused: "
                    + reuse.describe() + " parent=" + dir + "; every page is written"));
        }
        PageDigests digests;
        try {
            digests = PageDigests.read(dir);
        } catch (NoSuchFileException e) {
            return new ParentDump(dir, uptime.getAsLong(), PageDigests.empty(), Optional.of("parent=" + dir + " has no "
                    + PageDigests.FILE_NAME + " (a CRIU dump, or one made without digests): every page is written"));
        } catch (DigestFileException e) {
            return new ParentDump(dir, uptime.getAsLong(), PageDigests.empty(), Optional.of(e.getMessage()));
        } catch (IOException e) {
            return new ParentDump(dir, uptime.getAsLong(), PageDigests.empty(), Optional.of("cannot read "
                    + dir.resolve(PageDigests.FILE_NAME) + ": " + e.getMessage() + "; every page is written"));
        }
        if (digests.pid() != pid || digests.dumpUptimeMicros() != uptime.getAsLong()) {
            return new ParentDump(dir, uptime.getAsLong(), PageDigests.empty(), Optional.of(dir.resolve(PageDigests.FILE_NAME)
                    + " describes another dump (pid=" + digests.pid() + " dump_uptime=" + digests.dumpUptimeMicros()
                    + ", the images say pid=" + pid + " dump_uptime=" + uptime.getAsLong() + "): every page is written"));
        }
        return new ParentDump(dir, uptime.getAsLong(), digests, Optional.empty());
    }

    /**
     * A parent known only by its digests (the images went to a page server), e.g. the previous iteration
     * of a migration. The same pid-reuse check applies.
     */
    public static ParentDump inMemory(int pid, PageDigests digests) {
        PidReuse reuse = PidReuse.check(pid, digests.dumpUptimeMicros());
        if (reuse.reused()) {
            return new ParentDump(null, digests.dumpUptimeMicros(), PageDigests.empty(),
                    Optional.of("the pid was reused: " + reuse.describe() + "; every page is written"));
        }
        return new ParentDump(null, digests.dumpUptimeMicros(), digests, Optional.empty());
    }

    /**
     * A parent known by the digests file a pre-dump to a page server left in a local state directory
     * ({@code pre-dump --to tcp://... --state DIR}): the images are on the server, which must link the new
     * session to exactly that dump — a chaining page server links it to the pid's newest session, so the
     * state must be that of the last pre-dump sent there (the CLI keeps one rolling state directory and
     * marks it pending while a pre-dump runs). Checks that the digests are of {@code pid}, then the
     * pid-reuse check of {@link #inMemory}.
     *
     * @throws ParentDumpException the directory or its digests file is missing, damaged, or of another pid
     */
    public static ParentDump fromState(Path dir, int pid) {
        PageDigests digests;
        try {
            digests = PageDigests.read(dir);
        } catch (NoSuchFileException e) {
            throw new ParentDumpException(dir, "parent=" + dir + " has no " + PageDigests.FILE_NAME + ": name the --state"
                    + " directory of an earlier pre-dump --to tcp:// of pid=" + pid + ", or a directory of images", e);
        } catch (IOException e) {
            throw new ParentDumpException(dir, "parent=" + dir + " has no readable " + PageDigests.FILE_NAME + ": "
                    + e.getMessage(), e);
        }
        if (digests.pid() != pid) {
            throw new ParentDumpException(dir, "parent=" + dir + " is the state of a pre-dump of pid=" + digests.pid()
                    + ", not of pid=" + pid + ": pick a parent dumped from this process, or dump without --parent");
        }
        return inMemory(pid, digests);
    }

    /** Whether unchanged pages may become holes against this parent. */
    public boolean holesAllowed() {
        return fallback.isEmpty();
    }
}
