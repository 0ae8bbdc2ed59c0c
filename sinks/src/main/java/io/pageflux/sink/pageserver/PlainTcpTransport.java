package io.pageflux.sink.pageserver;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.UnpooledByteBufAllocator;
import io.netty.util.NetUtil;
import io.pageflux.sink.file.StagingBuffers;
import io.pageflux.nativeio.Descriptors;
import io.pageflux.nativeio.Errno;
import io.pageflux.nativeio.NativeCallException;
import io.pageflux.nativeio.SplicePipe;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import reactor.util.Logger;
import reactor.util.Loggers;

/**
 * Plain-TCP sessions the way {@code socat} copies: one thread per session reads the socket into one
 * 1 MiB direct buffer and hands it straight to {@link ServerSession#onData}, which writes the image
 * files; replies are written by the same thread. No event loop and no hand-over between threads: on
 * few cores that hand-over was the page server's largest cost after the copies themselves (README,
 * "Page server").
 *
 * <p><b>Threads.</b> {@code pageflux-page-server-accept} accepts; each session runs on
 * {@code pageflux-page-session-<id>}. The accept thread is a daemon: a server a library user forgot
 * to stop does not keep the JVM alive (the CLI keeps itself alive by waiting for the server's
 * events). Session threads are not daemons: a dump in flight when the application's main thread
 * returns is finished (or ends at the idle timeout) rather than cut off half-written; they end at
 * the latest when {@link PageServer#stop()} cuts their connections. At most
 * {@link ServerConfig#maxSessions()} session threads run: a connection beyond that is closed by the
 * accept thread as soon as it is accepted ({@link LiveSessions#admit}), without a thread or a buffer.
 *
 * <p><b>Idle timeout.</b> The socket is non-blocking with its own {@link Selector}: a read that finds
 * nothing waits in {@code select} for at most what is left of the idle timeout, so the timeout is
 * measured on the session's own thread, only while it waits for the client (a slow disk write is not
 * idleness), with no watchdog thread racing the reader. A read that finds data (the usual case
 * while a dump streams) costs no more than a blocking read. Replies wait the same way for a client
 * that does not read them. {@link java.net.Socket#setSoTimeout} would not do: it applies only to the
 * socket's streams, which read into heap arrays (one more copy of every byte).
 *
 * <p><b>Memory.</b> One 1 MiB direct buffer per session (versus up to 3 MiB queued on the Netty path),
 * freed explicitly when the session ends, not left to the garbage collector: a server that serves
 * many sessions between collections would otherwise hold a MiB per finished session.
 */
final class PlainTcpTransport implements ServerTransport {

    private static final Logger LOG = Loggers.getLogger(PageServer.class);
    /** The socket read size: as socat's {@code -b 1M}; larger reads did not copy faster on loopback. */
    static final int READ_BYTES = 1 << 20;
    /**
     * The smallest run whose page bytes are spliced (socket → pipe → pages file) rather than read and written:
     * below it the two extra system calls per run cost more than the copy they save.
     */
    static final long SPLICE_MIN_BYTES = 64 << 10;
    /** The splice pipe's size: as the read buffer (and /proc/sys/fs/pipe-max-size's default). */
    static final int PIPE_BYTES = 1 << 20;
    /** Pause after a failed accept (EMFILE, ENFILE, ENOBUFS): the connection stays queued; retrying at once would spin. */
    private static final long ACCEPT_RETRY_MILLIS = 100;
    /** Failed accepts are logged once per this many milliseconds while they go on. */
    private static final long ACCEPT_LOG_MILLIS = 10_000;

    private final LiveSessions live;
    private final long idleMillis;
    /** Whether sessions may splice page bytes (config and {@link #spliceRefused}). */
    private final boolean spliceEnabled;
    /** Set once splice was refused by the kernel here (logged once): every later session copies. */
    private volatile boolean spliceRefused;
    /** Whether a pipe smaller than {@link #PIPE_BYTES} was logged (once per server; a benign race logs twice). */
    private volatile boolean pipeShrinkLogged;

    /** How a session finds its socket's descriptor; tests replace it to make one lookup fail. */
    interface SocketLookup {
        int duplicate(InetSocketAddress local, InetSocketAddress remote) throws IOException;
    }

    /** {@link Descriptors#duplicateSocket}, except in tests. */
    static volatile SocketLookup socketLookup = Descriptors::duplicateSocket;
    /** Page bytes spliced into pages files so far (tests, to know the splice path ran). */
    private final java.util.concurrent.atomic.AtomicLong splicedBytes = new java.util.concurrent.atomic.AtomicLong();
    private final ServerSocketChannel listener;
    private final int port;
    private final Thread acceptor;
    /**
     * Session threads, joined by {@link #release}. Ended ones are dropped at the next accept, not by
     * themselves: a thread that removed itself would still be alive for a moment, and stop() promises
     * that the threads have ended when it returns.
     */
    private final Map<Long, Thread> threads = new ConcurrentHashMap<>();
    /** Accept failures since the last warning, and when that was (accept thread only). */
    private int acceptFailures;
    private long lastAcceptLog;

    /** Binds {@code address:port} and starts accepting. */
    PlainTcpTransport(String address, int port, ServerConfig config, LiveSessions live) throws IOException {
        this.live = live;
        this.idleMillis = config.idleTimeout().toMillis();
        this.spliceEnabled = config.splice() && spliceWorks();
        this.listener = ServerSocketChannel.open();
        try {
            listener.setOption(StandardSocketOptions.SO_REUSEADDR, true);
            // the same backlog as the Netty listener: bursts of clients queue instead of being refused
            listener.bind(new InetSocketAddress(address, port), NetUtil.SOMAXCONN);
            this.port = ((InetSocketAddress) listener.getLocalAddress()).getPort();
        } catch (IOException | RuntimeException e) {
            listener.close();
            throw e;
        }
        this.acceptor = new Thread(this::acceptLoop, "pageflux-page-server-accept");
        acceptor.setDaemon(true);
        acceptor.start();
    }

    /**
     * Opens and closes one splice pipe at start: loads the native bindings now (jnr-ffi generates them on first
     * use, ~0.2 s that the first session would otherwise pay mid-transfer) and finds out whether this host gives
     * pipes at all. False, logged, when it does not: sessions then copy.
     */
    private static boolean spliceWorks() {
        try {
            SplicePipe.open(PIPE_BYTES).close();
            return true;
        } catch (NativeCallException | LinkageError e) {
            LOG.warn("page server: splice unavailable, page bytes are copied: cause=\"{}\"", e.toString());
            return false;
        }
    }

    @Override
    public int port() {
        return port;
    }

    @Override
    public void stopAccepting() {
        try {
            listener.close(); // wakes accept() with AsynchronousCloseException
        } catch (IOException e) {
            LOG.warn("page server: closing the listener failed: port={} cause={}", port, e.toString());
        }
        if (Thread.currentThread() == acceptor) {
            return; // stop() from an event listener on the accept thread: it ends when this returns
        }
        // out of descriptors, the acceptor may be pausing between failed Selector.open()s: wake it, it sees the
        // listener closed and ends (closing one socket frees too few descriptors for a selector)
        acceptor.interrupt();
        try {
            acceptor.join(); // at most starting the session just accepted
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void release(long deadlineNanos) {
        for (Thread t : threads.values()) {
            long left = deadlineNanos - System.nanoTime();
            if (left <= 0) {
                break;
            }
            try {
                t.join(Math.max(1, TimeUnit.NANOSECONDS.toMillis(left)));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /** Page bytes spliced into pages files so far (tests). */
    long splicedBytes() {
        return splicedBytes.get();
    }

    /** Session threads alive (tests). */
    int sessionThreads() {
        return (int) threads.values().stream().filter(Thread::isAlive).count();
    }

    private void acceptLoop() {
        Selector next = null;
        while (listener.isOpen()) {
            // the session's selector before its connection: when descriptors run out, the client waits in
            // the backlog instead of being accepted and then turned away (closed with its data unread: a reset)
            if (next == null) {
                try {
                    next = Selector.open();
                } catch (IOException e) {
                    if (backOff(e)) {
                        continue;
                    }
                    return;
                }
            }
            SocketChannel channel;
            try {
                channel = listener.accept();
            } catch (ClosedChannelException e) {
                closeQuietly(next);
                return; // stopAccepting() closed the listener
            } catch (IOException e) {
                if (backOff(e)) {
                    continue;
                }
                closeQuietly(next);
                return;
            }
            LiveSessions.Place place = live.admit(remoteOf(channel));
            if (place == null) {
                // max_sessions reached: closed unread, no thread and no buffer; the selector waits for the next one
                closeQuietly(channel);
                continue;
            }
            Selector selector = next;
            next = null;
            try {
                start(new Connection(channel, selector), place);
            } catch (IOException | RuntimeException e) {
                // this client's socket only (reset before it was set up): drop it and go on, no pause
                closeQuietly(channel);
                closeQuietly(selector);
                place.release();
                LOG.debug("page server dropped a connection it could not set up: port={} cause={}", port, e.toString());
            }
        }
        closeQuietly(next); // stopped while out of descriptors
    }

    /**
     * After a failed accept or {@code Selector.open}: out of file descriptors (EMFILE, ENFILE) or socket buffers. The
     * pending connections stay in the backlog; pause rather than spin on the same failure (or turn every
     * queued client away), and log once per {@link #ACCEPT_LOG_MILLIS} while it lasts.
     *
     * @return false when interrupted (stop)
     */
    private boolean backOff(IOException e) {
        acceptFailures++;
        long now = System.nanoTime();
        if (lastAcceptLog == 0 || now - lastAcceptLog >= TimeUnit.MILLISECONDS.toNanos(ACCEPT_LOG_MILLIS)) {
            LOG.warn("page server cannot accept a connection: port={} failures={} cause={}; retrying every {} ms"
                    + " (raise the open-files limit, ulimit -n, if this is EMFILE)", port, acceptFailures, e.toString(),
                    ACCEPT_RETRY_MILLIS);
            lastAcceptLog = now;
            acceptFailures = 0;
        }
        try {
            Thread.sleep(ACCEPT_RETRY_MILLIS);
            return true;
        } catch (InterruptedException stop) {
            return false;
        }
    }

    private static String remoteOf(SocketChannel channel) {
        try {
            return String.valueOf(channel.getRemoteAddress());
        } catch (IOException e) {
            return "unknown (" + e + ")";
        }
    }

    /**
     * Registers a session for the connection and starts its thread; closes the connection (and releases
     * its place) when that fails.
     */
    private void start(Connection c, LiveSessions.Place place) {
        threads.values().removeIf(t -> !t.isAlive());
        ServerSession session = live.begin(c.remote, c::reply, c::cut);
        if (session == null) {
            c.close(); // stopping
            place.release();
            return;
        }
        Thread thread = new Thread(() -> serve(c, session, place), "pageflux-page-session-" + session.id());
        threads.put(session.id(), thread);
        try {
            thread.start();
        } catch (OutOfMemoryError | RuntimeException e) {
            // no native thread to spare: this session ends, the server goes on
            threads.remove(session.id());
            c.close();
            place.release();
            live.end(session, "cannot start a session thread: cause=" + e + " (too many sessions for this host;"
                    + " lower --max-sessions)");
        }
    }

    /** The session's thread: reads until the client hangs up, the session ends, or the server stops. */
    private void serve(Connection c, ServerSession session, LiveSessions.Place place) {
        ByteBuf memory = null;
        Splicer splicer = null;
        String reason = "connection ended";
        try {
            memory = UnpooledByteBufAllocator.DEFAULT.directBuffer(READ_BYTES, READ_BYTES);
            ByteBuffer buf = memory.nioBuffer(0, READ_BYTES);
            splicer = spliceEnabled && !spliceRefused ? new Splicer(c, session) : null;
            boolean spliced = false;
            while (!session.isDone()) {
                buf.clear();
                // a splicer without pipe or descriptor (this session copies) must not shorten reads either
                if (splicer != null && !spliceRefused && splicer.usable()) {
                    long run = session.spliceable(SPLICE_MIN_BYTES);
                    if (run > 0 && splicer.splice(run, buf)) {
                        spliced = true;
                        continue;
                    }
                    int fill = session.pageRemainder(SPLICE_MIN_BYTES);
                    if (fill > 0) {
                        buf.limit(fill); // completes the half-copied page: the rest of the run is spliced
                    } else if (spliced && session.atBoundary()) {
                        // after a spliced run most likely another one: its header alone, not its pages into buf
                        buf.limit(PageServerWire.HEADER_BYTES);
                    }
                    spliced = false;
                }
                int n = c.read(buf);
                if (n < 0) {
                    if (live.stopping()) {
                        session.fail(LiveSessions.SERVER_STOPPED);
                    }
                    session.onEof(); // after CLOSE: complete; before: fails saying where the stream broke
                } else if (n == 0) {
                    session.onIdle(idleMillis); // after CLOSE: complete; before: fails naming idle_timeout_ms
                } else {
                    buf.flip();
                    session.onData(buf);
                }
            }
        } catch (ServerSession.SessionFailure e) {
            session.fail(e.getMessage());
        } catch (IOException | RuntimeException e) {
            // ClosedChannelException when stop() cut the connection: end() says "server stopped"
            reason = "connection error: cause=" + e;
        } catch (OutOfMemoryError e) {
            // typically direct memory (-XX:MaxDirectMemorySize) taken by many live sessions' buffers: this one
            // ends, and its registry entry with it, so stop() does not wait for it
            reason = "out of memory: cause=" + e + " live_sessions=" + live.size() + " (each holds a "
                    + READ_BYTES + "-byte read buffer and up to " + StagingBuffers.DEFAULT_BUFFERS
                    + " O_DIRECT staging buffers of 1 MiB; raise -XX:MaxDirectMemorySize or limit concurrent clients)";
        } finally {
            if (splicer != null) {
                splicer.close();
            }
            if (memory != null) {
                memory.release(); // frees the direct memory now (Netty's cleaner call), not at some later GC
            }
            // the place first: a client that sees this connection close and connects again finds it free
            place.release();
            c.close();
            live.end(session, reason);
        }
    }

    private static void closeQuietly(java.io.Closeable c) {
        if (c == null) {
            return;
        }
        try {
            c.close();
        } catch (IOException ignored) {
            // nothing more to do
        }
    }

    /** Logs the first refusal of splice and turns it off for later sessions (they copy, as before). */
    private void refuseSplice(String remote, Exception e) {
        if (!spliceRefused) {
            spliceRefused = true;
            LOG.warn("page server: splice refused, page bytes are copied from now on: port={} remote={} cause=\"{}\"",
                    port, remote, e.getMessage());
        }
    }

    /**
     * Moves the page bytes of large present runs from the socket into the pages file with {@code splice(2)}:
     * one copy per byte instead of two (socket → user buffer → page cache). Holds, opened on first use and
     * closed with the session: a pipe, a duplicate of the socket's descriptor (the JDK does not expose the
     * channel's; a duplicate of our own also cannot be closed and reused under us by {@link Connection#cut})
     * and a descriptor of the current pages file. The socket is non-blocking: when it has nothing, the
     * session's selector waits for it, within the idle timeout, exactly as {@link Connection#read}.
     */
    private final class Splicer {
        private final Connection c;
        private final ServerSession session;
        private SplicePipe pipe;
        private int socket = -1;
        private Path file;
        private int fileFd = -1;
        /** Whether a splice into a file succeeded: after that, an error is an error and not a refusal. */
        private boolean proven;
        /** Set when the pipe or the socket's descriptor could not be had: this session copies, without retrying. */
        private boolean unavailable;

        Splicer(Connection c, ServerSession session) {
            this.c = c;
            this.session = session;
        }

        /**
         * Splices up to {@code run} bytes of the current run (all of them unless the client stalls, hangs up or
         * the session fails).
         *
         * @param buf the session's read buffer, for the bytes taken from the socket when the file refuses splice
         * @return false when splice was refused before any byte moved: read them the usual way
         */
        boolean splice(long run, ByteBuffer buf) throws IOException {
            if (!open()) {
                return false;
            }
            long left = run;
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(idleMillis);
            while (left > 0 && !session.isDone()) {
                if (!c.channel.isOpen()) {
                    throw new ClosedChannelException(); // stop() cut the connection; our duplicate keeps it alive
                }
                long n;
                try {
                    n = pipe.fromSocket(socket, left);
                } catch (NativeCallException e) {
                    if (!proven && e.errno() == Errno.EINVAL) {
                        refuseSplice(c.remote, e);
                        return false;
                    }
                    throw new IOException(e.getMessage(), e);
                }
                if (n < 0) { // nothing to read now
                    if (!c.await(deadline)) {
                        session.onIdle(idleMillis); // a stalled client: the session fails naming idle_timeout_ms
                    }
                    continue;
                }
                if (n == 0) {
                    if (live.stopping()) {
                        session.fail(LiveSessions.SERVER_STOPPED);
                    }
                    session.onEof(); // fails saying how many payload bytes were missing
                    return true;
                }
                long offset = session.spliceOffset();
                try {
                    pipe.toFile(fileOf(session.spliceFile()), offset);
                } catch (NativeCallException e) {
                    if (!proven && pipe.held() == n && e.errno() == Errno.EINVAL) {
                        // this file system takes no splice: the bytes go the usual way, and so does everything after
                        refuseSplice(c.remote, e);
                        pipe.drain(buf);
                        buf.flip();
                        session.onData(buf);
                        return true;
                    }
                    throw new IOException(e.getMessage() + " (pages file " + file + ")", e);
                }
                proven = true;
                splicedBytes.addAndGet(n);
                session.onSpliced(n);
                left -= n;
                deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(idleMillis);
            }
            return true;
        }

        /** False once the pipe or the socket's descriptor could not be had: this session copies. */
        boolean usable() {
            return !unavailable;
        }

        /** The pipe and the socket's duplicate, on first use; false (refused, logged) when they cannot be had. */
        private boolean open() {
            if (pipe != null) {
                return true;
            }
            if (unavailable) {
                return false;
            }
            unavailable = true; // until both are open
            try {
                socket = socketLookup.duplicate((InetSocketAddress) c.channel.getLocalAddress(),
                        (InetSocketAddress) c.channel.getRemoteAddress());
                if (socket < 0) {
                    // typically a client that reset the connection already (no peer address left): only this
                    // session copies; the kernel did not refuse splice, so later sessions still try
                    LOG.debug("page server: no splice for this session: remote={} cause=\"the connection's"
                            + " descriptor is not in /proc/self/fd (connection reset?)\"", c.remote);
                    return false;
                }
                pipe = SplicePipe.open(PIPE_BYTES);
                if (pipe.capacity() < PIPE_BYTES) {
                    // F_SETPIPE_SZ refused: an unprivileged user past fs.pipe-user-pages-soft (1024 pages by
                    // default, e.g. 64 sessions of 1 MiB) gets small pipes; splices then move less per call
                    if (!pipeShrinkLogged) {
                        pipeShrinkLogged = true;
                        LOG.warn("page server: splice pipes are smaller than asked: asked={} got={} remote={}"
                                + " (raise /proc/sys/fs/pipe-user-pages-soft or pipe-max-size; logged once)",
                                PIPE_BYTES, pipe.capacity(), c.remote);
                    }
                    if (pipe.capacity() < SPLICE_MIN_BYTES) {
                        LOG.debug("page server: no splice for this session: remote={} cause=\"pipe capacity={}"
                                + " < splice_min_bytes={}\"", c.remote, pipe.capacity(), SPLICE_MIN_BYTES);
                        close();
                        return false;
                    }
                }
                unavailable = false;
                return true;
            } catch (IOException | NativeCallException e) {
                // EMFILE, /proc/self/fd not listable and the like: this session copies, later ones try again
                LOG.debug("page server: no splice for this session: remote={} cause={}", c.remote, e.toString());
                close();
                return false;
            }
        }

        /** A descriptor of {@code pages}, reopened when the session moved on to another pagemap. */
        private int fileOf(Path pages) {
            if (!pages.equals(file)) {
                Descriptors.close(fileFd);
                fileFd = -1;
                file = pages;
                fileFd = Descriptors.openForWriting(pages);
            }
            return fileFd;
        }

        void close() {
            if (pipe != null) {
                pipe.close();
                pipe = null;
            }
            Descriptors.close(socket);
            socket = -1;
            Descriptors.close(fileFd);
            fileFd = -1;
            file = null;
        }
    }

    /** One accepted socket in non-blocking mode, waited on with its own selector. */
    private final class Connection {
        private final SocketChannel channel;
        private final Selector selector;
        private final SelectionKey key;
        private final String remote;

        Connection(SocketChannel channel, Selector selector) throws IOException {
            this.channel = channel;
            this.selector = selector;
            this.remote = String.valueOf(channel.getRemoteAddress());
            channel.configureBlocking(false);
            // replies are small and awaited by the client (as Netty's default)
            channel.setOption(StandardSocketOptions.TCP_NODELAY, true);
            this.key = channel.register(selector, SelectionKey.OP_READ);
        }

        /**
         * Reads what the client sent into {@code buf}: the byte count, -1 when the client half-closed or
         * closed, 0 when it sent nothing for the idle timeout.
         */
        int read(ByteBuffer buf) throws IOException {
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(idleMillis);
            while (true) {
                int n = channel.read(buf);
                if (n != 0) {
                    return n;
                }
                if (!await(deadline)) {
                    return 0;
                }
            }
        }

        /** Waits until the key's interest is ready or {@link #cut} woke us; false once {@code deadline} passed. */
        private boolean await(long deadline) throws IOException {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return false;
            }
            selector.select(Math.max(1, TimeUnit.NANOSECONDS.toMillis(left)));
            selector.selectedKeys().clear();
            return true;
        }

        /**
         * Writes a reply completely before returning (the client reads it before it sends more);
         * the future fails when the client did not take it within the idle timeout or the connection broke.
         */
        Future<?> reply(ByteBuffer bytes) {
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(idleMillis);
            try {
                while (bytes.hasRemaining()) {
                    if (channel.write(bytes) == 0) {
                        key.interestOps(SelectionKey.OP_WRITE);
                        try {
                            if (!await(deadline)) {
                                return CompletableFuture.failedFuture(new TimeoutException("reply_bytes_unsent="
                                        + bytes.remaining() + " after idle_timeout_ms=" + idleMillis
                                        + ": the client does not read"));
                            }
                        } finally {
                            key.interestOps(SelectionKey.OP_READ);
                        }
                    }
                }
                return CompletableFuture.completedFuture(null);
            } catch (IOException | RuntimeException e) {
                return CompletableFuture.failedFuture(e);
            }
        }

        /** From any thread (stop): closes the socket and wakes the session thread, whose next read fails. */
        void cut() {
            closeQuietly(channel);
            selector.wakeup();
        }

        /** Closes the socket and the selector (the socket's descriptor is released with the selector's key). */
        void close() {
            closeQuietly(channel);
            closeQuietly(selector);
        }
    }
}
