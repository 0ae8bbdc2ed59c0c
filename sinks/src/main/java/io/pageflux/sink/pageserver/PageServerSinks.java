package io.pageflux.sink.pageserver;

import java.net.URI;
import java.time.Duration;

/** Factories for {@link PageServerSink}. */
public final class PageServerSinks {

    static final Duration DEFAULT_CONNECT_TIMEOUT = Duration.ofSeconds(10);
    static final Duration DEFAULT_REPLY_TIMEOUT = Duration.ofSeconds(60);

    private PageServerSinks() {
    }

    /**
     * A sink that sends dumps to the page server at {@code host:port}, plain TCP; configure TLS and
     * the PARENT question with {@link PageServerSink#secure} and {@link PageServerSink#askParent}.
     * Nothing connects until a dump is written.
     */
    public static PageServerSink connect(String host, int port) {
        return new PageServerSink(host, port, null, null, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REPLY_TIMEOUT);
    }

    /**
     * Parses {@code tcp://HOST:PORT} (the CLI's {@code --to} form; IPv6 as {@code tcp://[::1]:27027}).
     *
     * @throws IllegalArgumentException naming the text when it is not of that form
     */
    public static PageServerSink connect(String uri) {
        URI u;
        try {
            u = new URI(uri);
        } catch (java.net.URISyntaxException e) {
            throw new IllegalArgumentException("not a page server address: '" + uri + "' (use tcp://HOST:PORT)", e);
        }
        if (!"tcp".equalsIgnoreCase(u.getScheme()) || u.getHost() == null || u.getPort() <= 0
                || (u.getPath() != null && !u.getPath().isEmpty())) {
            throw new IllegalArgumentException("not a page server address: '" + uri + "' (use tcp://HOST:PORT)");
        }
        String host = u.getHost();
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        return connect(host, u.getPort());
    }
}
