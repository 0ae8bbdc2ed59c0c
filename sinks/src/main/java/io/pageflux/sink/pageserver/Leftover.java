package io.pageflux.sink.pageserver;

import java.nio.file.Path;
import java.util.Optional;

/**
 * What a starting {@link PageServer} did with one thing a previous server left in its directory
 * (a crash, a kill, a power cut): see {@link PageServer#leftovers()}.
 *
 * @param path      the leftover, e.g. {@code DIR/.incoming-3} or {@code DIR/..incoming-4.partial-1a2b}
 * @param action    what was done with it
 * @param published where it is now, for {@link Action#PUBLISHED}
 * @param reason    why, as key=value facts
 */
public record Leftover(Path path, Action action, Optional<Path> published, String reason) {

    public enum Action {
        /** A committed session (CLOSE received, images on disk) renamed to its visible name. */
        PUBLISHED,
        /** An unfinished session (or one whose images did not check out), deleted. */
        DELETED,
        /** Left in place because renaming or deleting it failed (the reason says what to do). */
        KEPT
    }

    /** One line for logs and the CLI. */
    public String describe() {
        return switch (action) {
            case PUBLISHED -> "leftover " + path.getFileName() + " published as " + published.map(Path::getFileName)
                    .map(Path::toString).orElse("?") + ": " + reason;
            case DELETED -> "leftover " + path.getFileName() + " deleted: " + reason;
            case KEPT -> "leftover " + path.getFileName() + " kept: " + reason;
        };
    }
}
