package io.pageflux.sink.pageserver;

import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Sinks;
import reactor.util.Logger;
import reactor.util.Loggers;

/**
 * The session lifecycle both transports share: numbering, the registry of live sessions, the
 * {@link SessionEvent} stream and the stop protocol. A transport calls {@link #begin} for each
 * accepted connection, feeds the returned {@link ServerSession}, and calls {@link #end} exactly once
 * when the connection is done with, whatever the way it ended.
 */
final class LiveSessions {

    private static final Logger LOG = Loggers.getLogger(PageServer.class);

    static final String SERVER_STOPPED = "server stopped";

    private final ServerConfig config;
    private final SessionDirectories directories;
    private final Sinks.Many<SessionEvent> events = Sinks.many().multicast().directBestEffort();
    /** Live sessions and how to cut each one's connection. */
    private final Map<Long, Runnable> active = new ConcurrentHashMap<>();
    private final AtomicLong sequence = new AtomicLong();
    /** Guards {@link #stopping} against {@link #begin}, so no session registers after stop() took its snapshot. */
    private final Object lock = new Object();
    private volatile boolean stopping;

    LiveSessions(ServerConfig config, SessionDirectories directories) {
        this.config = config;
        this.directories = directories;
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
            LOG.warn("page server session {} from {} failed: {}", f.session(), f.remote(), f.reason());
        } else if (event instanceof SessionEvent.Completed c) {
            LOG.info("page server session {} from {} completed: dir={} pages={} bytes={}", c.session(), c.remote(),
                    c.directory().map(Path::toString).orElse("(none)"), c.pages(), c.bytesReceived());
        }
        synchronized (events) {
            events.tryEmitNext(event);
        }
    }
}
