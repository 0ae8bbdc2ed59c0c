package io.pageflux.sink.pageserver;

import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Sinks;
import reactor.util.Logger;
import reactor.util.Loggers;

/**
 * The session lifecycle both transports share: the cap on concurrent connections, numbering, the
 * registry of live sessions, the {@link SessionEvent} stream and the stop protocol. A transport calls
 * {@link #admit} for each accepted connection before it reads from it (and closes it at once when
 * that refuses), {@link #begin} when it is ready to serve it, feeds the returned {@link ServerSession},
 * calls {@link #end} exactly once when the connection is done with, whatever the way it ended, and
 * releases the admitted {@link Place} when it closes the connection.
 */
final class LiveSessions {

    /** Per server, not static: a logger factory installed before the server started (tests capture) sees it. */
    private final Logger log = Loggers.getLogger(PageServer.class);

    static final String SERVER_STOPPED = "server stopped";
    /** Refused connections are logged once per this many nanoseconds while refusals go on. */
    private static final long REFUSAL_LOG_NANOS = TimeUnit.SECONDS.toNanos(10);

    private final ServerConfig config;
    private final SessionDirectories directories;
    private final Sinks.Many<SessionEvent> events = Sinks.many().multicast().directBestEffort();
    /** Live sessions and how to cut each one's connection. */
    private final Map<Long, Runnable> active = new ConcurrentHashMap<>();
    private final AtomicLong sequence = new AtomicLong();
    /** Connections admitted and not closed yet (at most {@link ServerConfig#maxSessions()}). */
    private final AtomicInteger admitted = new AtomicInteger();
    private final AtomicLong refused = new AtomicLong();
    /** Refusals since the last warning, and when that was (0: none yet); guarded by itself. */
    private final long[] refusalLog = new long[2];
    /** Guards {@link #stopping} against {@link #begin}, so no session registers after stop() took its snapshot. */
    private final Object lock = new Object();
    private volatile boolean stopping;

    LiveSessions(ServerConfig config, SessionDirectories directories) {
        this.config = config;
        this.directories = directories;
    }

    /**
     * One of the {@link ServerConfig#maxSessions()} places, held by a connection from its accept until it is
     * closed. {@link #release} is idempotent, so every path that closes the connection may call it.
     */
    final class Place {
        private final AtomicBoolean released = new AtomicBoolean();

        /** The connection was closed (or is about to be): its place goes to the next client. */
        void release() {
            if (released.compareAndSet(false, true)) {
                admitted.decrementAndGet();
            }
        }
    }

    /**
     * Takes a place for a connection just accepted, before anything is read from it. When all
     * {@link ServerConfig#maxSessions()} are taken, the connection is refused: published as
     * {@link SessionEvent.Refused}, logged (at most one warning per 10 s, which counts the refusals since the
     * last one), and {@code null} is returned: the caller closes the connection at once, unread.
     */
    Place admit(String remote) {
        int max = config.maxSessions();
        while (true) {
            int n = admitted.get();
            if (n >= max) {
                refuse(remote, n);
                return null;
            }
            if (admitted.compareAndSet(n, n + 1)) {
                return new Place();
            }
        }
    }

    private void refuse(String remote, int live) {
        long total = refused.incrementAndGet();
        String reason = "max_sessions=" + config.maxSessions() + " reached: connections=" + live
                + " (the connection was closed unread)";
        long now = System.nanoTime();
        long since;
        synchronized (refusalLog) {
            refusalLog[0]++;
            if (refusalLog[1] != 0 && now - refusalLog[1] < REFUSAL_LOG_NANOS) {
                since = -1;
            } else {
                since = refusalLog[0];
                refusalLog[0] = 0;
                refusalLog[1] = now;
            }
        }
        if (since > 0) {
            log.warn("page server refused a connection: remote={} reason={} refused_since_last_warning={}"
                    + " refused_total={}; raise --max-sessions (PageServer.Builder.maxSessions) if this many"
                    + " concurrent clients are expected (next warning in 10 s at the earliest)", remote, reason, since,
                    total);
        }
        emit(new SessionEvent.Refused(remote, reason));
    }

    /** Connections refused because all places were taken. */
    long refused() {
        return refused.get();
    }

    /** Connections holding a place (tests). */
    int admitted() {
        return admitted.get();
    }

    /**
     * A session for a connection just accepted, registered as live, its {@link SessionEvent.Started}
     * emitted; {@code null} when the server is stopping (the caller closes the connection).
     *
     * @param disconnect cuts the connection (from any thread); the transport then ends the session
     */
    ServerSession begin(String remote, ServerSession.Output output, Runnable disconnect) {
        ServerSession session;
        synchronized (lock) {
            if (stopping) {
                return null;
            }
            session = new ServerSession(sequence.incrementAndGet(), remote, Instant.now(), config, directories,
                    output, this::emit);
            active.put(session.id(), disconnect);
        }
        emit(new SessionEvent.Started(session.id(), remote));
        return session;
    }

    /**
     * The connection of {@code session} is done with: a session that did not complete or fail yet
     * fails with {@code reason} ({@value #SERVER_STOPPED} while stopping), then it leaves the registry.
     */
    void end(ServerSession session, String reason) {
        if (!session.isDone()) {
            session.fail(failureReason(reason));
        }
        active.remove(session.id());
    }

    /** {@code reason}, or {@value #SERVER_STOPPED} when the connection was cut because the server stops. */
    String failureReason(String reason) {
        return stopping ? SERVER_STOPPED : reason;
    }

    boolean stopping() {
        return stopping;
    }

    int size() {
        return active.size();
    }

    long started() {
        return sequence.get();
    }

    Flux<SessionEvent> events() {
        return events.asFlux();
    }

    /**
     * Refuses new sessions and cuts every live one, then waits up to {@code wait} for them to end
     * (a session in the middle of a file write finishes that write first).
     *
     * @return whether every session ended in time
     */
    boolean stopAll(Duration wait) {
        List<Runnable> cuts;
        synchronized (lock) {
            stopping = true;
            cuts = new ArrayList<>(active.values());
        }
        cuts.forEach(Runnable::run);
        long deadline = System.nanoTime() + wait.toNanos();
        while (!active.isEmpty() && System.nanoTime() < deadline) {
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        return active.isEmpty();
    }

    /** Completes {@link #events()}: nothing more will happen. */
    void completeEvents() {
        synchronized (events) {
            events.tryEmitComplete();
        }
    }

    private void emit(SessionEvent event) {
        if (event instanceof SessionEvent.Failed f) {
            log.warn("page server session {} from {} failed: {}", f.session(), f.remote(), f.reason());
        } else if (event instanceof SessionEvent.Completed c) {
            log.info("page server session {} from {} completed: dir={} pages={} bytes={}", c.session(), c.remote(),
                    c.directory().map(Path::toString).orElse("(none)"), c.pages(), c.bytesReceived());
        }
        synchronized (events) {
            events.tryEmitNext(event);
        }
    }
}
