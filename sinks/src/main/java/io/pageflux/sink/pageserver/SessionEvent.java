package io.pageflux.sink.pageserver;

import io.pageflux.source.PagemapId;
import java.nio.file.Path;
import java.util.Optional;

/**
 * What happened to one page-server session, as {@link PageServer#events()} reports it. Every
 * session emits {@link Started}, zero or more {@link Opened} (and in chain mode at most one
 * {@link ParentChosen}), and exactly one of
 * {@link Completed} or {@link Failed}. A connection the server did not serve (all
 * {@link PageServer.Builder#maxSessions places} taken) emits only {@link Refused}.
 */
public sealed interface SessionEvent {

    /** 1, 2, 3, ... in the order the server began serving the connections; 0 for {@link Refused}. */
    long session();

    /** The client's address, e.g. {@code /127.0.0.1:51234}. */
    String remote();

    /** A client connected (after the TLS handshake, when TLS is on). */
    record Started(long session, String remote) implements SessionEvent {
    }

    /** The client opened a pagemap for the first time; {@code hasParent} is what OPEN2 answered. */
    record Opened(long session, String remote, PagemapId pagemap, long pagesId, boolean hasParent)
            implements SessionEvent {
    }

    /**
     * Chain mode ({@link PageServer.Builder#chain}): the first PARENT naming a task decided which
     * images this session's holes refer to ({@code parent}, linked as the session's {@code parent}),
     * or that it has none.
     */
    record ParentChosen(long session, String remote, PagemapId askedFor, Optional<Path> parent)
            implements SessionEvent {
    }

    /**
     * CLOSE was answered and the client hung up: {@code directory} is complete (absent when the
     * client closed without opening any pagemap, so nothing was written).
     */
    record Completed(long session, String remote, Optional<Path> directory, long pages, long bytesReceived,
                     long entries) implements SessionEvent {
    }

    /** The session ended without a complete directory; {@code reason} says why as key=value facts. */
    record Failed(long session, String remote, String reason) implements SessionEvent {
    }

    /**
     * A connection closed as soon as it was accepted, unread, because the server serves
     * {@link PageServer.Builder#maxSessions} connections already; it never became a session (no number:
     * {@link #session()} is 0). {@code reason} names the cap, e.g.
     * {@code max_sessions=64 reached: connections=64 (the connection was closed unread)}.
     */
    record Refused(String remote, String reason) implements SessionEvent {
        @Override
        public long session() {
            return 0;
        }
    }
}
