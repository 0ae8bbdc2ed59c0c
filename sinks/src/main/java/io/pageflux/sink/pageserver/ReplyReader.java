package io.pageflux.sink.pageserver;

import io.netty.buffer.ByteBuf;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SocketChannel;
import java.util.function.Supplier;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.MonoSink;
import reactor.core.publisher.Sinks;

/**
 * The client's view of what the server sends back: tiny replies (1 or 4 bytes), only ever one
 * outstanding. Bytes that arrive when no reply is expected, or more bytes than a reply has, are a
 * protocol error; so is the server hanging up before the CLOSE reply.
 */
final class ReplyReader {

    private final String server;
    private final byte[] pending = new byte[16];
    private int have;
    private int expected;
    private String expectedFor;
    /** Blocking mode: describes the command awaiting its answer; asked only for messages. */
    private Supplier<String> expectedForLazy;
    private MonoSink<ByteBuffer> waiter;
    /** Blocking mode: a thread waits in {@link #await} for {@link #expected} bytes. */
    private boolean blockingWait;
    /** Blocking mode: the server has closed its side (or the connection failed). */
    private boolean endedBlocking;
    private PageServerException failure;
    private Disposable subscription;
    private volatile boolean stopped;
    /** Completes when the server closed its side (or the connection failed). */
    private final Sinks.Empty<Void> ended = Sinks.empty();

    ReplyReader(String server) {
        this.server = server;
    }

    /** Starts consuming the inbound bytes; each ByteBuf is copied out and released by reactor-netty. */
    void start(Flux<ByteBuf> inbound) {
        subscription = inbound.subscribe(this::onBytes, this::onError, this::onEof);
    }

    /**
     * Starts consuming the replies of a blocking socket on a thread of its own, which is idle
     * except for the few replies and ends when the socket is closed. Reads and the session's
     * writes may block concurrently: a socket channel locks its two directions separately.
     */
    void start(SocketChannel socket) {
        Thread thread = new Thread(() -> {
            ByteBuffer in = ByteBuffer.allocate(pending.length + 1);
            try {
                while (!stopped) {
                    in.clear();
                    int n = socket.read(in);
                    if (n < 0) {
                        onEof();
                        return;
                    }
                    onBytes(in.array(), n);
                }
            } catch (IOException e) {
                if (!stopped) {
                    onError(e);
                }
            }
        }, "pageflux-page-server-replies");
        thread.setDaemon(true);
        thread.start();
    }

    void stop() {
        stopped = true;
        if (subscription != null) {
            subscription.dispose();
        }
        synchronized (this) {
            notifyAll(); // a thread in await() or awaitEnd() gives up
        }
    }

    /**
     * Blocking mode: waits for the next {@code n} bytes the server sends, in answer to the command
     * {@code command} describes (asked only for an error message).
     *
     * @return the reply, little-endian, or null when none came within {@code timeoutNanos}
     * @throws PageServerException when the server hung up, sent too much, or the reader was stopped
     */
    ByteBuffer await(int n, Supplier<String> command, long timeoutNanos) {
        long deadline = System.nanoTime() + timeoutNanos;
        synchronized (this) {
            expected = n;
            expectedFor = null;
            expectedForLazy = command;
            blockingWait = true;
            try {
                while (failure == null && have < expected) {
                    long left = deadline - System.nanoTime();
                    if (left <= 0) {
                        return null;
                    }
                    if (stopped) {
                        throw new PageServerException("page server session ended: server=" + server
                                + " while=waiting for the reply to " + command.get());
                    }
                    try {
                        wait(Math.max(1, left / 1_000_000), 0);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new PageServerException("interrupted while waiting for the page server: server=" + server
                                + " command=" + command.get(), e);
                    }
                }
                if (failure != null) {
                    throw failure;
                }
                ByteBuffer reply = ByteBuffer.allocate(expected).order(ByteOrder.LITTLE_ENDIAN);
                reply.put(pending, 0, expected).flip();
                System.arraycopy(pending, expected, pending, 0, have - expected);
                have -= expected;
                return reply;
            } finally {
                blockingWait = false;
            }
        }
    }

    /** Blocking mode: waits at most {@code timeoutNanos} until the server has closed the connection. */
    void awaitEnd(long timeoutNanos) {
        long deadline = System.nanoTime() + timeoutNanos;
        synchronized (this) {
            while (!endedBlocking && !stopped) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    return;
                }
                try {
                    wait(Math.max(1, left / 1_000_000), 0);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return;
                }
            }
        }
    }

    /** What the current reply answers, for messages. */
    private String expectedFor() {
        return expectedFor != null ? expectedFor : expectedForLazy != null ? expectedForLazy.get() : null;
    }

    /** Whether a reply is awaited, by a Mono or a blocked thread. */
    private boolean waiting() {
        return waiter != null || blockingWait;
    }

    /** The next {@code n} bytes the server sends, in answer to {@code command}. */
    Mono<ByteBuffer> expect(int n, String command) {
        return Mono.create(sink -> {
            Completion done;
            synchronized (this) {
                if (failure != null) {
                    done = new Completion(sink, null, failure);
                } else {
                    expected = n;
                    expectedFor = command;
                    expectedForLazy = null;
                    waiter = sink;
                    done = takeReply();
                }
            }
            done.run();
        });
    }

    /** Fails if the server sent something unasked or hung up; cheap, called once per chunk. */
    synchronized void check() {
        if (failure != null) {
            throw failure;
        }
        if (have > 0) {
            throw unexpected(have);
        }
    }

    private void onBytes(ByteBuf buf) {
        int n = buf.readableBytes();
        byte[] bytes = new byte[Math.min(n, pending.length + 1)];
        buf.readBytes(bytes);
        onBytes(bytes, n);
    }

    /** {@code n} bytes from the server; only the first {@code bytes.length} are kept (more is an error anyway). */
    private void onBytes(byte[] bytes, int n) {
        Completion done;
        synchronized (this) {
            // a reply may arrive before expect() is subscribed: keep it; more than any reply is an error
            if (have + n > pending.length || (waiting() && have + n > expected)) {
                done = fail(unexpected(have + n - (waiting() ? expected : 0)));
            } else {
                System.arraycopy(bytes, 0, pending, have, n);
                have += n;
                done = takeReply();
                if (blockingWait && have >= expected) {
                    notifyAll();
                }
            }
        }
        done.run();
    }

    /** The waiter and its reply if all of the reply's bytes are here (under the lock; run it after). */
    private Completion takeReply() {
        if (waiter == null || have < expected) {
            return Completion.NONE;
        }
        ByteBuffer reply = ByteBuffer.allocate(expected).order(ByteOrder.LITTLE_ENDIAN);
        reply.put(pending, 0, expected).flip();
        System.arraycopy(pending, expected, pending, 0, have - expected);
        have -= expected;
        MonoSink<ByteBuffer> w = waiter;
        waiter = null;
        return new Completion(w, reply, null);
    }

    private void markEnded() {
        ended.tryEmitEmpty();
        synchronized (this) {
            endedBlocking = true;
            notifyAll();
        }
    }

    /** Completes once the server has closed the connection (EOF) or it failed. */
    Mono<Void> ended() {
        return ended.asMono();
    }

    private void onError(Throwable t) {
        Completion done;
        synchronized (this) {
            done = fail(new PageServerException("page server connection failed: server=" + server + " while="
                    + (waiting() ? "waiting for the reply to " + expectedFor() : "sending") + " cause=" + t
                    + "; the server keeps nothing from this session: check the server's log and retry", t));
        }
        markEnded();
        done.run();
    }

    private void onEof() {
        Completion done;
        synchronized (this) {
            done = fail(new PageServerException("page server closed the connection: server=" + server + " while="
                    + (waiting() ? "waiting for the reply to " + expectedFor() : "sending")
                    + "; it rejected the session (see its log for the reason, e.g. a size cap or an idle timeout)"
                    + " and keeps nothing from it: fix the cause and retry the dump"));
        }
        markEnded();
        done.run();
    }

    private PageServerException unexpected(int extra) {
        return new PageServerException("page server sent " + extra + " unexpected byte(s): server=" + server
                + (expectedFor() != null ? " last_command=" + expectedFor() : "")
                + "; it does not speak the CRIU page-server protocol as expected: check host and port");
    }

    /** Records the first failure; returns the waiter to fail with it (under the lock; run it after). */
    private Completion fail(PageServerException e) {
        if (failure == null) {
            failure = e;
        }
        notifyAll(); // a blocked await() fails with it
        if (waiter == null) {
            return Completion.NONE;
        }
        MonoSink<ByteBuffer> w = waiter;
        waiter = null;
        return new Completion(w, null, failure);
    }

    /**
     * A waiter to complete, decided under the lock and run after it is released: completing a sink runs
     * the dump's next steps on this thread, which must not hold this reader's lock meanwhile (they may
     * wait for another thread that is itself about to call into this reader).
     */
    private record Completion(MonoSink<ByteBuffer> waiter, ByteBuffer reply, PageServerException error) {
        static final Completion NONE = new Completion(null, null, null);

        void run() {
            if (waiter == null) {
                return;
            }
            if (error != null) {
                waiter.error(error);
            } else {
                waiter.success(reply);
            }
        }
    }
}
