package io.pageflux.sink.pageserver;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.AdaptiveRecvByteBufAllocator;
import io.netty.channel.ChannelOption;
import io.netty.handler.ssl.SslContext;
import io.netty.util.ReferenceCountUtil;
import io.pageflux.source.DataSize;
import io.pageflux.source.PageRun;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;
import reactor.netty.Connection;
import reactor.netty.DisposableServer;
import reactor.netty.NettyInbound;
import reactor.netty.NettyOutbound;
import reactor.netty.tcp.TcpResources;
import reactor.netty.tcp.TcpServer;
import reactor.util.Logger;
import reactor.util.Loggers;

/**
 * A CRIU-protocol page server that receives dumps from pageflux's {@link PageServerSink} or from
 * {@code criu dump --page-server} and writes them as CRIU image directories, through the same
 * writer as local dumps. Unlike {@code criu page-server} it listens on loopback unless told
 * otherwise, serves any number of sessions concurrently and one after another, and defends itself
 * (caps, idle timeout, malformed input ends only the offending session).
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
 * <p>Memory per session is bounded (about 3 MiB): page data is streamed from the socket's buffers
 * into the files — at most {@code READ_PREFETCH + 1} reads of up to 1 MiB wait per session before
 * reading pauses and TCP pushes back on the client — never accumulated. Served on Netty's NIO
 * transport (see the constructor for why not epoll).
 */
public final class PageServer implements AutoCloseable {

    private static final Logger LOG = Loggers.getLogger(PageServer.class);
    /** Socket reads queued per session between the event loop and the session's writer thread. */
    private static final int READ_PREFETCH = 2;
    /**
     * Largest socket read. Reads grow to this size only for clients that fill them; with
     * {@link #READ_PREFETCH} it bounds a session's receive memory to about 3 MiB. 1 MiB reads
     * were ~15% faster than Netty's 64 KiB default on loopback.
     */
    private static final int MAX_READ_BYTES = 1 << 20;

    private final ServerConfig config;
    private final SessionDirectories sessions;
    private final DisposableServer server;
    private final Scheduler workers;
    private final Sinks.Many<SessionEvent> events = Sinks.many().multicast().directBestEffort();
    private final Map<Long, Connection> active = new ConcurrentHashMap<>();
    private final AtomicLong sequence = new AtomicLong();
    private final String address;
    private volatile boolean stopping;

    private PageServer(Builder b, ServerConfig config, SessionDirectories sessions) {
        this.config = config;
        this.sessions = sessions;
        this.workers = Schedulers.newBoundedElastic(Math.max(4, 2 * Runtime.getRuntime().availableProcessors()),
                Integer.MAX_VALUE, "pageflux-page-server", 60, true);
        TcpServer tcp = TcpServer.create().host(b.address).port(b.port)
                // a client may half-close after its last byte and still read the CLOSE answer
                .childOption(ChannelOption.ALLOW_HALF_CLOSURE, true)
                .childOption(ChannelOption.RCVBUF_ALLOCATOR, new AdaptiveRecvByteBufAllocator(4096, 65536, MAX_READ_BYTES))
                // NIO, not epoll: Netty 4.2.17's epoll transport drops a half-closed channel whose
                // reads are paused (epoll_ctl ENOENT, then close), losing the CLOSE answer
                .runOn(TcpResources.get(), false)
                .handle(this::handle);
        if (b.tls != null) {
            SslContext ssl = b.tls;
            tcp = tcp.secure(spec -> spec.sslContext(ssl));
        }
        try {
            this.server = tcp.bindNow(Duration.ofSeconds(10));
        } catch (RuntimeException e) {
            workers.dispose();
            sessions.close();
            throw new PageServerException("page server cannot listen: address=" + b.address + " port=" + b.port
                    + " cause=" + e + "; choose another --port (0 picks a free one) or stop the program using it", e);
        }
        this.address = b.address;
        LOG.info("page server listening: address={} port={} dir={} tls={} chain={}", b.address, server.port(),
                config.directory(), b.tls != null ? "on" : "off", config.chain());
    }

    public static Builder builder() {
        return new Builder();
    }

    /** The port the server listens on (the one picked when configured with port 0). */
    public int boundPort() {
        return server.port();
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
        return active.size();
    }

    /**
     * Session events as they happen. Hot, no replay: subscribe before clients connect to see
     * their sessions. Never blocks the server: a subscriber that does not keep up (no demand)
     * misses events rather than slowing sessions down. Completes when the server stops.
     */
    public Flux<SessionEvent> events() {
        return events.asFlux();
    }

    /**
     * Stops listening and ends every active session (each gets a {@link SessionEvent.Failed} and
     * leaves no visible directory), then completes {@link #events()}. Idempotent.
     */
    public void stop() {
        if (stopping) {
            return;
        }
        stopping = true;
        server.disposeNow(Duration.ofSeconds(10));
        active.values().forEach(Connection::dispose);
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (!active.isEmpty() && System.nanoTime() < deadline) {
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        workers.dispose();
        if (active.isEmpty()) {
            sessions.close();
        } else {
            // a session still ends (a slow fsync, a blocked GET): keep DIR locked, so that a new server does
            // not take its files for a crashed server's leftovers; the lock goes when this JVM exits
            LOG.warn("page server stop: {} session(s) still ending after 10 s; dir={} stays locked until this"
                    + " process exits", active.size(), config.directory());
        }
        synchronized (events) {
            events.tryEmitComplete();
        }
        LOG.info("page server stopped: port={} sessions={}", server.port(), sequence.get());
    }

    @Override
    public void close() {
        stop();
    }

    private Publisher<Void> handle(NettyInbound in, NettyOutbound out) {
        Connection[] holder = new Connection[1];
        in.withConnection(c -> holder[0] = c);
        Connection connection = holder[0];
        long id = sequence.incrementAndGet();
        String remote = String.valueOf(connection.channel().remoteAddress());
        ServerSession session = new ServerSession(id, remote, Instant.now(), config, sessions,
                reply -> connection.channel().writeAndFlush(Unpooled.wrappedBuffer(reply)), this::emit);
        if (stopping) {
            connection.dispose();
            return Mono.empty();
        }
        active.put(id, connection);
        emit(new SessionEvent.Started(id, remote));
        long idleMillis = config.idleTimeout().toMillis();
        connection.onReadIdle(idleMillis, () -> workers.schedule(() -> {
            if (session.onIdle(idleMillis)) {
                connection.dispose();
            }
        }));
        // reactor-netty does not surface a half-close: turn it into a marker that queues behind the data
        connection.addHandlerLast("pageflux.endOfInput", new EndOfInputHandler());
        in.receiveObject()
                // reactor-netty releases each message after onNext; keep buffers until the worker wrote them
                .map(message -> message instanceof ByteBuf buf ? buf.retain() : message)
                // the session's file writes happen on a worker, not on the event loop; reading pauses
                // (autoRead off) while READ_PREFETCH reads wait, so TCP pushes back on the client
                .publishOn(workers, READ_PREFETCH)
                .doOnNext(message -> {
                    if (message instanceof ByteBuf buf) {
                        try {
                            for (ByteBuffer part : buf.nioBuffers()) {
                                session.onData(part);
                            }
                        } finally {
                            buf.release();
                        }
                    }
                })
                .takeUntil(message -> message == EndOfInputHandler.END_OF_INPUT)
                .doOnDiscard(ByteBuf.class, ReferenceCountUtil::safeRelease)
                .then(Mono.fromRunnable(() -> {
                    if (stopping) {
                        session.fail("server stopped");
                    }
                    session.onEof();
                }))
                .onErrorResume(e -> {
                    session.fail(e instanceof ServerSession.SessionFailure ? e.getMessage()
                            : "connection error: cause=" + e);
                    return Mono.empty();
                })
                .doFinally(signal -> {
                    if (!session.isDone()) {
                        session.fail(stopping ? "server stopped" : "connection ended: signal=" + signal);
                    }
                    active.remove(id);
                    connection.dispose();
                })
                // subscribed here, not returned to reactor-netty: when the client closes the socket
                // right after its last bytes, the data already read must still be processed, and
                // reactor-netty cancels the handler's publisher as soon as the channel closes
                .subscribe();
        return connection.onDispose();
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

    /**
     * Configures a {@link PageServer}. Defaults: {@code 127.0.0.1}, port 27027, no TLS, no parent
     * images, 262144 pages (1 GiB) per header, 64 GiB per session, 60 s idle timeout, session
     * directories named {@code {pid}-{time}-{seq}}.
     */
    public static final class Builder {
        private Path directory;
        private String address = "127.0.0.1";
        private int port = 27027;
        private Path parentImages;
        private SslContext tls;
        private long maxPagesPerHeader = 1L << 18;
        private long maxBytesPerSession = DataSize.ofGibibytes(64).bytes();
        private Duration idleTimeout = Duration.ofSeconds(60);
        private String template = ServerConfig.DEFAULT_TEMPLATE;
        private boolean chain;
        private boolean directIo = true;

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
            Optional<Path> parent = Optional.ofNullable(parentImages).map(p -> p.toAbsolutePath().normalize());
            if (parent.isPresent() && !Files.isDirectory(parent.get())) {
                throw new PageServerException("parent images are not a directory: parent=" + parent.get()
                        + "; point --parent-images at a previous dump's directory");
            }
            Optional<Path> link = parent.map(p -> Path.of("..").resolve(dir.relativize(p)));
            ServerConfig config = new ServerConfig(dir, parent, link, maxPagesPerHeader, maxBytesPerSession,
                    idleTimeout, template, PageRun.PAGE_SIZE, chain, directIo);
            return new PageServer(this, config, SessionDirectories.open(config));
        }
    }
}
