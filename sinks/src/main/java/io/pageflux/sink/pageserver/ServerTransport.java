package io.pageflux.sink.pageserver;

/**
 * How a {@link PageServer} accepts connections and moves their bytes into {@link ServerSession}s.
 * The lifecycle (numbering, events, stop) is {@link LiveSessions}'; a transport only listens, reads,
 * writes replies, times out idle connections and calls {@link LiveSessions#begin} / {@link LiveSessions#end}.
 */
interface ServerTransport {

    /** The port listened on (the one picked for port 0). */
    int port();

    /** Stops accepting connections; returns when no new session can begin. Live sessions go on. */
    void stopAccepting();

    /**
     * After every session ended (or the stop wait ran out): releases the transport's threads, waiting for
     * them until {@code deadlineNanos} ({@link System#nanoTime()}).
     */
    void release(long deadlineNanos);
}
