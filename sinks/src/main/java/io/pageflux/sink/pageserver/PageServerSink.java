package io.pageflux.sink.pageserver;

import io.netty.channel.ChannelOption;
import io.netty.handler.ssl.SslContext;
import io.pageflux.sink.DumpContext;
import io.pageflux.sink.PageSink;
import io.pageflux.sink.SinkResult;
import io.pageflux.source.PageChunk;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import java.util.Objects;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.core.scheduler.Schedulers;
import reactor.netty.tcp.TcpClient;

/**
 * Sends a dump to a CRIU-protocol page server (pageflux's {@link PageServer} or {@code criu
 * page-server}). Immutable: every setter returns a modified copy; one instance can serve many
 * dumps, each {@link #write} opening its own connection.
 *
 * <p>When asking for a parent, first {@code PARENT} for the task (a chaining server picks the
 * session's parent by it). Then per pagemap, in the order the chunks first name it: {@code PARENT}
 * (when asking for a parent, once, 4-byte answer), {@code OPEN2} (1-byte answer: whether the server has a parent pagemap),
 * then one {@code ADD_F} per run with the run's PE_* flags, followed by the run's bytes when it is
 * PE_PRESENT. A run of a pagemap opened earlier re-opens it with another {@code OPEN2} (pageflux's
 * server appends; CRIU's own server expects each pagemap once, which is what a reader that walks
 * the address space in CRIU's order produces). Finally {@code CLOSE}, whose answer must be 0.
 */
public final class PageServerSink implements PageSink {

    private final String host;
    private final int port;
    private final SslContext ssl;
    private final Boolean askParent;
    private final Duration connectTimeout;
    private final Duration replyTimeout;

    PageServerSink(String host, int port, SslContext ssl, Boolean askParent, Duration connectTimeout,
                   Duration replyTimeout) {
        this.host = Objects.requireNonNull(host, "host");
        if (port <= 0 || port > 65535) {
            throw new IllegalArgumentException("page server port=" + port + " is not a TCP port (1..65535)");
        }
        this.port = port;
        this.ssl = ssl;
        this.askParent = askParent;
        this.connectTimeout = Objects.requireNonNull(connectTimeout, "connectTimeout");
        this.replyTimeout = Objects.requireNonNull(replyTimeout, "replyTimeout");
    }

    /**
     * Talks TLS, with the given client context (see {@link PageServerTls#clientFromPem}); the server's
     * certificate must name the host this sink connects to.
     */
    public PageServerSink secure(SslContext clientContext) {
        if (!clientContext.isClient()) {
            throw new IllegalArgumentException("a page server sink needs a client SslContext, got a server one");
        }
        return new PageServerSink(host, port, clientContext, askParent, connectTimeout, replyTimeout);
    }

    /**
     * Whether to ask {@code PARENT} before opening each pagemap. By default it asks when the dump
     * is a pre-dump or names a parent ({@link DumpContext#preDump()}, {@link DumpContext#parent()}),
     * as CRIU does. Holes (PE_PARENT runs) are refused before sending when the server answers that
     * it has no parent for their pagemap.
     */
    public PageServerSink askParent(boolean ask) {
        return new PageServerSink(host, port, ssl, ask, connectTimeout, replyTimeout);
    }

    public PageServerSink connectTimeout(Duration timeout) {
        return new PageServerSink(host, port, ssl, askParent, timeout, replyTimeout);
    }

    /** How long to wait for the answer to OPEN2, PARENT or CLOSE (default 60 s). */
    public PageServerSink replyTimeout(Duration timeout) {
        return new PageServerSink(host, port, ssl, askParent, connectTimeout, timeout);
    }

    public String host() {
        return host;
    }

    public int port() {
        return port;
    }

    /**
     * Connects when subscribed, sends every chunk, sends CLOSE and checks its answer.
     *
     * <p><b>Backpressure and ownership:</b> requests one chunk ahead of the one being written and
     * the next only after the previous chunk's bytes were handed to the socket; each chunk is
     * written from its own buffer and released once written — also on error and cancel (queued
     * chunks are released through {@code doOnDiscard}). Chunks are not subscribed at all if the
     * connection cannot be made.
     *
     * @return the counts sent ({@code bytesWritten} includes the 32-byte headers); errors with a
     *         {@link PageServerException} naming {@code server=host:port} and the command in flight.
     *         On error or cancel the connection is dropped without CLOSE, so the server keeps
     *         nothing that looks complete.
     */
    @Override
    public Mono<SinkResult> write(DumpContext context, Flux<PageChunk> chunks) {
        boolean ask = askParent != null ? askParent : context.preDump() || context.parent().isPresent();
        if (ssl == null) {
            // plain TCP: blocking writes from the reader's thread (see BlockingClientSession for why)
            return Mono.usingWhen(connectBlocking(),
                    socket -> new BlockingClientSession(socket, describeServer(), ask, replyTimeout, context).run(chunks),
                    PageServerSink::closeQuietly,
                    (socket, error) -> closeQuietly(socket),
                    PageServerSink::closeQuietly);
        }
        return Mono.usingWhen(connect(),
                connection -> new ClientSession(connection, describeServer(), ask, replyTimeout, context).run(chunks),
                connection -> Mono.fromRunnable(connection::dispose).then(connection.onDispose()),
                (connection, error) -> Mono.fromRunnable(connection::dispose),
                connection -> Mono.fromRunnable(connection::dispose));
    }

    private Mono<SocketChannel> connectBlocking() {
        return Mono.fromCallable(() -> {
                    SocketChannel socket = SocketChannel.open();
                    try {
                        socket.setOption(java.net.StandardSocketOptions.TCP_NODELAY, true);
                        socket.socket().connect(new InetSocketAddress(host, port),
                                (int) Math.min(Integer.MAX_VALUE, connectTimeout.toMillis()));
                        return socket;
                    } catch (IOException | RuntimeException e) {
                        socket.close();
                        throw e;
                    }
                })
                .subscribeOn(Schedulers.boundedElastic())
                .onErrorMap(e -> !(e instanceof PageServerException), this::cannotConnect);
    }

    /** Closing the socket also ends a write blocked in it (cancel) and the reply reader's read. */
    private static Mono<Void> closeQuietly(SocketChannel socket) {
        return Mono.fromRunnable(() -> {
            try {
                socket.close();
            } catch (IOException ignored) {
                // nothing to do: the connection is gone either way
            }
        });
    }

    private PageServerException cannotConnect(Throwable e) {
        return new PageServerException(
                "cannot connect to page server: server=" + describeServer() + " command=connect"
                        + (ssl != null ? " tls=on" : "") + " cause=" + e + "; is `pageflux page-server` (or `criu"
                        + " page-server`) listening on " + describeServer() + "? check host, port"
                        + (ssl != null ? " and the certificates (the server's must name " + host + ")" : ""), e);
    }

    private Mono<? extends Connection> connect() {
        TcpClient client = TcpClient.create()
                .host(host)
                .port(port)
                .option(ChannelOption.CONNECT_TIMEOUT_MILLIS, (int) Math.min(Integer.MAX_VALUE, connectTimeout.toMillis()));
        if (ssl != null) {
            // reactor-netty's plain TCP client does not check the server's name: ask the JDK to
            client = client.secure(spec -> spec.sslContext(ssl).handlerConfigurator(handler -> {
                SSLEngine engine = handler.engine();
                SSLParameters params = engine.getSSLParameters();
                params.setEndpointIdentificationAlgorithm("HTTPS");
                engine.setSSLParameters(params);
            }));
        }
        return client.connect().onErrorMap(e -> !(e instanceof PageServerException), this::cannotConnect);
    }

    private String describeServer() {
        return (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + port;
    }

    @Override
    public String describe() {
        return (ssl != null ? "tls" : "tcp") + "://" + describeServer();
    }
}
