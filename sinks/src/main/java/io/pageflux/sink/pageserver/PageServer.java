package io.pageflux.sink.pageserver;

import io.netty.handler.ssl.SslContext;
import io.pageflux.source.DataSize;
import io.pageflux.source.PageRun;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import reactor.core.publisher.Flux;
import reactor.util.Logger;
import reactor.util.Loggers;

/**
 * A CRIU-protocol page server that receives dumps from pageflux's {@link PageServerSink} or from
 * {@code criu dump --page-server} and writes them as CRIU image directories, through the same
 * writer as local dumps. Unlike {@code criu page-server} it listens on loopback unless told
 * otherwise, serves many sessions concurrently and one after another, and defends itself
 * (caps on concurrent sessions, header sizes and session bytes, idle timeout; malformed input ends
 * only the offending session).
 *
 * <p>Each session writes {@code DIR/<name>} (default name {@code <pid>-<yyyyMMdd-HHmmss>-<seq>},
 * UTC), with pages_id counting from 65537 and a relative {@code parent} link when parent images
 * are configured. A directory becomes visible only when the session completed: CLOSE answered
 * (after the pages were committed to disk) and the client hung up without sending more. Hidden
 * {@code .incoming-*} / {@code .*.partial-*} names are work in progress; what a crashed server left
 * under them is dealt with at start ({@link #leftovers()}). One server per directory (a lock file).
 *
 * <p>GET (CRIU's lazy restore and remote parent reads) is answered from the newest completed session
 * of the pid (holes resolved through its parent chain), or from the parent images.
 *
 * <p>Memory per session is bounded: page data is streamed from the socket's buffers into the files,
 * never accumulated. Plain TCP is served by one thread per session reading into one 1 MiB buffer
 * ({@link Transport#THREADS}, like {@code socat}: the fastest on few cores); TLS by reactor-netty's
 * NIO event loops with a worker per session and up to 3 MiB queued per session ({@link Transport#NETTY},
 * the JDK's SSLEngine in Netty's SslHandler). Both share one session lifecycle: the same events,
 * limits, idle timeout and stop.
 */
public final class PageServer implements AutoCloseable {

    private static final Logger LOG = Loggers.getLogger(PageServer.class);
    /** How long {@link #stop()} waits for live sessions to end. */
    private static final Duration STOP_WAIT = Duration.ofSeconds(10);
    /** The default {@link Builder#maxSessions}. */
    public static final int DEFAULT_MAX_SESSIONS = 64;

    /**
     * What serves the sessions. Plain TCP defaults to {@link #THREADS}; TLS is always served by
     * {@link #NETTY} (the JDK's SSLEngine inside Netty's SslHandler is the TLS stack this server has).
     */
    public enum Transport {
        /**
         * One thread per session reading the socket into one 1 MiB buffer and writing the files, like
         * {@code socat}; plain TCP only. The faster one on few cores (README, "Page server": ~1.45 vs
         * ~1.25 GiB/s on 2 cores), with one thread and 1 MiB per live session.
         */
        THREADS,
        /**
         * reactor-netty: event loops read, a worker thread per live session writes (up to 3 MiB queued
         * per session; a session waiting for its client to read an answer stalls only itself). Serves TLS;
         * the hand-over between the threads costs CPU.
         */
        NETTY
    }

    private final ServerConfig config;
    private final SessionDirectories sessions;
    private final LiveSessions live;
    private final ServerTransport transport;
    private final String address;

    private PageServer(Builder b, ServerConfig config, SessionDirectories sessions) {
        this.config = config;
        this.sessions = sessions;
        this.live = new LiveSessions(config, sessions);
        Transport kind = b.transport != null ? b.transport : b.tls != null ? Transport.NETTY : Transport.THREADS;
        try {
            this.transport = kind == Transport.THREADS
                    ? new PlainTcpTransport(b.address, b.port, config, live)
                    : new NettyTransport(b.address, b.port, b.tls, config, live);
        } catch (IOException | RuntimeException e) {
            sessions.close();
            throw new PageServerException("page server cannot listen: address=" + b.address + " port=" + b.port
                    + " cause=" + e + "; choose another --port (0 picks a free one) or stop the program using it", e);
        }
        this.address = b.address;
        LOG.info("page server listening: address={} port={} dir={} tls={} transport={} chain={}", b.address,
                transport.port(), config.directory(), b.tls != null ? "on" : "off", kind, config.chain());
    }

    public static Builder builder() {
        return new Builder();
    }

    /** The port the server listens on (the one picked when configured with port 0). */
    public int boundPort() {
        return transport.port();
    }

    public String address() {
        return address;
    }

    /** The directory session directories are written into. */
    public Path directory() {
        return config.directory();
    }

    /**
     * What this server did at start with the leftovers of a previous server in its directory (one that
     * crashed or was killed): committed but unpublished sessions ({@code .incoming-<seq>}: CLOSE was
     * received, the images were on disk) are published under a name with {@code {seq}} = {@code r<seq>}
     * when their images check out, unfinished ones ({@code ..incoming-<seq>.partial-*}) are deleted.
     * Each is also logged. Empty when there were none.
     */
    public List<Leftover> leftovers() {
        return sessions.leftovers();
    }

    /** Sessions connected and not yet ended. */
    public int activeSessions() {
        return live.size();
    }

    /** Connections holding one of the {@link Builder#maxSessions} places (tests). */
    int admittedConnections() {
        return live.admitted();
    }

    /** Page bytes the plain-TCP transport spliced into pages files (tests); -1 with Netty. */
    long splicedBytes() {
        return transport instanceof PlainTcpTransport t ? t.splicedBytes() : -1;
    }

    /** The transport's thread count for tests: session threads alive on {@link Transport#THREADS}, else -1. */
    int sessionThreads() {
        return transport instanceof PlainTcpTransport t ? t.sessionThreads() : -1;
    }

    /**
     * Session events as they happen. Hot, no replay: subscribe before clients connect to see
     * their sessions. Never blocks the server: a subscriber that does not keep up (no demand)
     * misses events rather than slowing sessions down. Completes when the server stops.
     */
    public Flux<SessionEvent> events() {
        return live.events();
    }

    /**
     * Stops listening and ends every active session (each gets a {@link SessionEvent.Failed} with
     * reason {@code server stopped} and leaves no visible directory; one in the middle of a file write
     * finishes that write first, waited for up to 10 s), then completes {@link #events()}. With the
     * thread transport its threads have ended when it returns, unless a session was still writing after
     * those 10 s (then the directory stays locked until the JVM exits; logged); Netty's workers end
     * shortly after. Call it from a thread of your own, not from a session's event listener. Idempotent.
     */
    public synchronized void stop() {
        if (live.stopping()) {
            return;
        }
        long deadline = System.nanoTime() + STOP_WAIT.toNanos();
        transport.stopAccepting();
        boolean ended = live.stopAll(STOP_WAIT);
        transport.release(deadline);
        if (ended) {
            sessions.close();
        } else {
            // a session still ends (a slow fsync, a blocked GET): keep DIR locked, so that a new server does
            // not take its files for a crashed server's leftovers; the lock goes when this JVM exits
            LOG.warn("page server stop: {} session(s) still ending after 10 s; dir={} stays locked until this"
                    + " process exits", live.size(), config.directory());
        }
        live.completeEvents();
        LOG.info("page server stopped: port={} sessions={} refused={}", transport.port(), live.started(),
                live.refused());
    }

    @Override
    public void close() {
        stop();
    }

    /**
     * Configures a {@link PageServer}. Defaults: {@code 127.0.0.1}, port 27027, no TLS, no parent
     * images, 64 sessions at once, 262144 pages (1 GiB) per header, 64 GiB per session, 60 s idle
     * timeout, session directories named {@code {pid}-{time}-{seq}}.
     */
    public static final class Builder {
        private Path directory;
        private String address = "127.0.0.1";
        private int port = 27027;
        private Path parentImages;
        private SslContext tls;
        private int maxSessions = DEFAULT_MAX_SESSIONS;
        private long maxPagesPerHeader = 1L << 18;
        private long maxBytesPerSession = DataSize.ofGibibytes(64).bytes();
        private Duration idleTimeout = Duration.ofSeconds(60);
        private String template = ServerConfig.DEFAULT_TEMPLATE;
        private boolean chain;
        private boolean directIo = true;
        private boolean splice = true;
        private Transport transport;

        private Builder() {
        }

        /** Where session directories go (created if missing). Required. */
        public Builder directory(Path directory) {
            this.directory = Objects.requireNonNull(directory, "directory");
            return this;
        }

        /** The address to listen on; {@code 0.0.0.0} or {@code ::} for all interfaces. */
        public Builder address(String address) {
            this.address = Objects.requireNonNull(address, "address");
            return this;
        }

        /** The TCP port; 0 picks a free one (see {@link PageServer#boundPort()}). */
        public Builder port(int port) {
            if (port < 0 || port > 65535) {
                throw new IllegalArgumentException("port=" + port + " is not a TCP port (0..65535, 0 = pick a free one)");
            }
            this.port = port;
            return this;
        }

        /**
         * A previous dump the sessions build on: PARENT and OPEN2 answer whether it has the
         * pagemap, and each session directory gets a relative {@code parent} link to it.
         */
        public Builder parentImages(Path parentImages) {
            this.parentImages = parentImages;
            return this;
        }

        /**
         * Chain incremental dumps (default off): a session whose client asks PARENT about a task gets as
         * its parent the newest completed session in the directory that holds that task's pagemap (else
         * the {@link #parentImages parent images}, if they hold it): PARENT and OPEN2 answer from it and
         * the session directory gets a relative {@code parent} link to it ({@code ../<session>}). So
         * {@code pageflux migrate --to tcp://} and repeated {@code pre-dump --to tcp://} build a chain
         * on the server. A session that never asks PARENT has no parent.
         */
        public Builder chain(boolean chain) {
            this.chain = chain;
            return this;
        }

        /**
         * Whether the sessions' pages files are written with O_DIRECT (default {@code true}, as local dumps;
         * see {@code ImageDirectoryWriter.Options.withDirectIo}). Network data arrives unaligned, so direct
         * writes go through a staging copy: on a tmpfs, or where the received images are read back at once,
         * {@code false} (the page cache) is faster.
         */
        public Builder directIo(boolean directIo) {
            this.directIo = directIo;
            return this;
        }

        /**
         * Whether plain-TCP sessions ({@link Transport#THREADS}) move the page bytes of large runs from the
         * socket into the pages file with {@code splice(2)} (default {@code true}): one copy per byte instead of
         * two. Used only where the pages file is written through the page cache ({@link #directIo} false, or
         * O_DIRECT refused by the file system); the files are the same either way. When the kernel refuses
         * splice, the server logs it once and copies.
         */
        public Builder splice(boolean splice) {
            this.splice = splice;
            return this;
        }

        /**
         * TLS with this server context (see {@link PageServerTls#serverFromPem}); it decides whether client
         * certificates are required.
         */
        public Builder tls(SslContext serverContext) {
            if (serverContext != null && !serverContext.isServer()) {
                throw new IllegalArgumentException("a page server needs a server SslContext, got a client one");
            }
            this.tls = serverContext;
            return this;
        }

        /**
         * What serves the sessions (default: {@link Transport#THREADS} for plain TCP, {@link Transport#NETTY}
         * with TLS, which only Netty serves).
         */
        public Builder transport(Transport transport) {
            this.transport = Objects.requireNonNull(transport, "transport");
            return this;
        }

        /**
         * How many connections are served at once (default {@value PageServer#DEFAULT_MAX_SESSIONS}): each costs
         * a thread on {@link Transport#THREADS}, and on both transports its read and staging buffers and
         * descriptors. A connection beyond the cap is closed as soon as it is accepted, before anything is read
         * from it or any TLS handshake (the client sees the connection closed, or reset when it had sent data);
         * it is published as {@link SessionEvent.Refused} and logged (one warning per 10 s while refusals go
         * on, with the remote address and how many were refused). Live sessions go on; a place frees up when a
         * session's connection is closed, however it ended. On Netty a connection counts from its accept, TLS
         * handshake included.
         */
        public Builder maxSessions(int sessions) {
            if (sessions <= 0) {
                throw new IllegalArgumentException("max sessions=" + sessions + " must be positive");
            }
            this.maxSessions = sessions;
            return this;
        }

        /** The largest {@code nr_pages} one header may announce (default 262144 = 1 GiB). */
        public Builder maxPagesPerHeader(long pages) {
            if (pages <= 0 || pages > Long.MAX_VALUE / PageRun.PAGE_SIZE) {
                throw new IllegalArgumentException("max pages per header=" + pages + " must be positive");
            }
            this.maxPagesPerHeader = pages;
            return this;
        }

        /** The most bytes (headers and pages) one session may send (default 64 GiB). */
        public Builder maxBytesPerSession(DataSize bytes) {
            if (bytes.bytes() <= 0) {
                throw new IllegalArgumentException("max bytes per session=" + bytes + " must be positive");
            }
            this.maxBytesPerSession = bytes.bytes();
            return this;
        }

        /** A session that sends nothing for this long ends (default 60 s). */
        public Builder idleTimeout(Duration timeout) {
            if (timeout.isNegative() || timeout.isZero()) {
                throw new IllegalArgumentException("idle timeout=" + timeout + " must be positive");
            }
            this.idleTimeout = timeout;
            return this;
        }

        /**
         * The session directory name, with {@code {pid}} (the first task pagemap's pid, or
         * {@code nopid}), {@code {time}} (session start, UTC {@code yyyyMMdd-HHmmss}) and {@code {seq}}
         * (1, 2, ... per server). Must give a plain name: letters, digits, {@code _ . + -}, not
         * starting with a dot. A name already taken gets {@code -2}, {@code -3}, ... appended.
         */
        public Builder sessionDirTemplate(String template) {
            this.template = ServerConfig.checkTemplate(template);
            return this;
        }

        /**
         * Binds and starts serving.
         *
         * @throws PageServerException if the directory cannot be created or the port is taken
         */
        public PageServer start() {
            if (directory == null) {
                throw new IllegalStateException("page server needs a directory: call directory(DIR)");
            }
            Path dir = directory.toAbsolutePath().normalize();
            try {
                Files.createDirectories(dir);
            } catch (IOException e) {
                throw new PageServerException("cannot create the page server directory: dir=" + dir + " cause=" + e
                        + "; choose a writable directory", e);
            }
            if (!Files.isWritable(dir)) {
                throw new PageServerException("page server directory is not writable: dir=" + dir
                        + "; choose a writable directory");
            }
            if (tls != null && transport == Transport.THREADS) {
                throw new IllegalStateException("transport=THREADS serves plain TCP only: TLS is served by"
                        + " transport=NETTY (leave the transport unset)");
            }
            Optional<Path> parent = Optional.ofNullable(parentImages).map(p -> p.toAbsolutePath().normalize());
            if (parent.isPresent() && !Files.isDirectory(parent.get())) {
                throw new PageServerException("parent images are not a directory: parent=" + parent.get()
                        + "; point --parent-images at a previous dump's directory");
            }
            Optional<Path> link = parent.map(p -> Path.of("..").resolve(dir.relativize(p)));
            ServerConfig config = new ServerConfig(dir, parent, link, maxPagesPerHeader, maxBytesPerSession,
                    idleTimeout, template, PageRun.PAGE_SIZE, chain, directIo, maxSessions,
                    splice);
            return new PageServer(this, config, SessionDirectories.open(config));
        }
    }
}
