package io.pageflux.sink.pageserver;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import reactor.core.Disposable;

/** Records a server's events from before the first connection; waits for sessions to end. */
final class EventLog implements AutoCloseable {

    final List<SessionEvent> events = new CopyOnWriteArrayList<>();
    private final Disposable subscription;

    EventLog(PageServer server) {
        subscription = server.events().subscribe(events::add);
    }

    List<SessionEvent> ends() {
        return events.stream()
                .filter(e -> e instanceof SessionEvent.Completed || e instanceof SessionEvent.Failed).toList();
    }

    /** Waits (bounded) until {@code n} sessions ended; fails the test otherwise. */
    List<SessionEvent> awaitEnds(int n) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (ends().size() < n) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("expected " + n + " ended sessions, got events " + events);
            }
            Thread.sleep(5);
        }
        return ends();
    }

    SessionEvent awaitEnd() throws InterruptedException {
        return awaitEnds(1).get(0);
    }

    @Override
    public void close() {
        subscription.dispose();
    }
}
