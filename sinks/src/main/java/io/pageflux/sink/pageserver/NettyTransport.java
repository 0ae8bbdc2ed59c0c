package io.pageflux.sink.pageserver;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.AdaptiveRecvByteBufAllocator;
import io.netty.channel.Channel;
import io.netty.channel.ChannelOption;
import io.netty.handler.ssl.SslContext;
import io.netty.util.AttributeKey;
import io.netty.util.ReferenceCountUtil;
import java.nio.ByteBuffer;
import java.time.Duration;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;
import reactor.netty.Connection;
import reactor.netty.DisposableServer;
import reactor.netty.NettyInbound;
import reactor.netty.NettyOutbound;
import reactor.netty.tcp.TcpResources;
import reactor.netty.tcp.TcpServer;

/**
 * Sessions on reactor-netty: TLS (the JDK's SSLEngine in Netty's SslHandler), and plain TCP when
 * {@link PageServer.Transport#NETTY} is chosen. Netty's NIO event loops read up to 1 MiB per read;
 * the session's file writes happen on a worker thread, not on the event loop: reads are handed over
 * with {@code publishOn(workers, READ_PREFETCH)}, and reading pauses (autoRead off) while
 * {@link #READ_PREFETCH} reads wait, so TCP pushes back on the client. A session thus holds at most
 * about 3 MiB of received data; the hand-over costs CPU that {@link PlainTcpTransport} does not pay.
 *
 * <p>A connection takes its {@link LiveSessions#admit place} when its channel is initialized, before
 * the TLS handshake and before anything is read; beyond {@link ServerConfig#maxSessions()} it is
 * closed right there. The place is released when the channel closes.
 */
final class NettyTransport implements ServerTransport {

    /** Socket reads queued per session between the event loop and the session's writer thread. */
    private static final int READ_PREFETCH = 2;
    /**
     * Largest socket read. Reads grow to this size only for clients that fill them; with
     * {@link #READ_PREFETCH} it bounds a session's receive memory to about 3 MiB. 1 MiB reads
     * were ~15% faster than Netty's 64 KiB default on loopback.
     */
    private static final int MAX_READ_BYTES = 1 << 20;
    /** A connection's place among the max_sessions, from its channel's initialization to its close. */
    private static final AttributeKey<LiveSessions.Place> PLACE = AttributeKey.valueOf("pageflux.place");

    private final LiveSessions live;
    private final ServerConfig config;
    private final Scheduler workers;
    private final DisposableServer server;

    /** Binds {@code address:port}; throws what reactor-netty throws when it cannot. */
    NettyTransport(String address, int port, SslContext tls, ServerConfig config, LiveSessions live) {
        this.live = live;
        this.config = config;
        // A thread per live session (plus one for its idle check), created on demand and kept 60 s: a
        // session's writer blocks on file writes and waits (up to the idle timeout) for its answers to be
        // written, so sessions must not share a thread, or one client that stops reading stalls others.
        // max_sessions bounds the count, as it bounds the plain transport's threads.
        this.workers = Schedulers.newBoundedElastic(workerThreads(config.maxSessions()),
                Integer.MAX_VALUE, "pageflux-page-server", 60, true);
        TcpServer tcp = TcpServer.create().host(address).port(port)
                // a client may half-close after its last byte and still read the CLOSE answer
                .childOption(ChannelOption.ALLOW_HALF_CLOSURE, true)
                .childOption(ChannelOption.RCVBUF_ALLOCATOR, new AdaptiveRecvByteBufAllocator(4096, 65536, MAX_READ_BYTES))
                // NIO, not epoll: Netty 4.2.17's epoll transport drops a half-closed channel whose
                // reads are paused (epoll_ctl ENOENT, then close), losing the CLOSE answer
                .runOn(TcpResources.get(), false)
                // before the TLS handshake and before the first read (channelActive has not fired yet)
                .doOnChannelInit((observer, channel, ignored) -> admit(channel))
                .handle(this::handle);
        if (tls != null) {
            tcp = tcp.secure(spec -> spec.sslContext(tls));
        }
        try {
            this.server = tcp.bindNow(Duration.ofSeconds(10));
        } catch (RuntimeException e) {
            workers.dispose();
            throw e;
        }
    }

    /** Writer threads for {@code maxSessions} sessions: one each, one more each for idle checks, and 2 spare. */
    static int workerThreads(int maxSessions) {
        return (int) Math.min(Integer.MAX_VALUE, 2L * maxSessions + 2);
    }

    @Override
    public int port() {
        return server.port();
    }

    @Override
    public void stopAccepting() {
        server.disposeNow(Duration.ofSeconds(10));
    }

    @Override
    public void release(long deadlineNanos) {
        workers.dispose();
    }

    /** Takes a place for a new connection, or closes it at once (unread, no handshake) when all are taken. */
    private void admit(Channel channel) {
        LiveSessions.Place place = live.admit(String.valueOf(channel.remoteAddress()));
        if (place == null) {
            channel.close();
            return;
        }
        channel.attr(PLACE).set(place);
        channel.closeFuture().addListener(closed -> place.release());
    }

    /**
     * Releases the connection's place, then closes it: a client that sees the close and connects again finds
     * the place free (the channel's close listener would release it a moment after the client could see it).
     */
    private static void close(Connection connection) {
        LiveSessions.Place place = connection.channel().attr(PLACE).get();
        if (place != null) {
            place.release();
        }
        connection.dispose();
    }

    private Publisher<Void> handle(NettyInbound in, NettyOutbound out) {
        Connection[] holder = new Connection[1];
        in.withConnection(c -> holder[0] = c);
        Connection connection = holder[0];
        String remote = String.valueOf(connection.channel().remoteAddress());
        ServerSession session = live.begin(remote,
                reply -> connection.channel().writeAndFlush(Unpooled.wrappedBuffer(reply)), connection::dispose);
        if (session == null) {
            connection.dispose();
            return Mono.empty();
        }
        long idleMillis = config.idleTimeout().toMillis();
        connection.onReadIdle(idleMillis, () -> workers.schedule(() -> {
            if (session.onIdle(idleMillis)) {
                close(connection);
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
                    if (live.stopping()) {
                        session.fail(LiveSessions.SERVER_STOPPED);
                    }
                    session.onEof();
                }))
                .onErrorResume(e -> {
                    session.fail(e instanceof ServerSession.SessionFailure ? e.getMessage()
                            : "connection error: cause=" + e);
                    return Mono.empty();
                })
                .doFinally(signal -> {
                    live.end(session, "connection ended: signal=" + signal);
                    close(connection);
                })
                // subscribed here, not returned to reactor-netty: when the client closes the socket
                // right after its last bytes, the data already read must still be processed, and
                // reactor-netty cancels the handler's publisher as soon as the channel closes
                .subscribe();
        return connection.onDispose();
    }
}
