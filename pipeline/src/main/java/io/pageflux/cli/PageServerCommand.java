package io.pageflux.cli;

import io.netty.handler.ssl.SslContext;
import io.pageflux.sink.pageserver.Leftover;
import io.pageflux.sink.pageserver.PageServer;
import io.pageflux.sink.pageserver.PageServerTls;
import io.pageflux.sink.pageserver.SessionEvent;
import io.pageflux.source.DataSize;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code pageflux page-server}: receive dumps over CRIU's page-server protocol, many sessions at once. */
@Command(name = "page-server",
        mixinStandardHelpOptions = true,
        sortOptions = false,
        header = "Receive dumps from pageflux or CRIU over the page-server protocol.",
        description = {
                "Listens (loopback unless --address says otherwise) and writes every session into its own "
                        + "sub-directory of DIR, through the same writer as local dumps. A session that ends "
                        + "without CLOSE leaves nothing behind. Runs until interrupted, or until --sessions "
                        + "sessions have ended."},
        footerHeading = "%nExamples:%n",
        footer = {
                "  pageflux page-server --dir /srv/dumps                      # 127.0.0.1:27027",
                "  pageflux page-server --dir /srv/dumps --port 0             # prints the port it picked",
                "  pageflux page-server --dir /srv/dumps --chain              # then: pageflux migrate --to tcp://...",
                "  pageflux page-server --dir /srv/dumps --address 0.0.0.0 \\",
                "      --tls-cert server.pem --tls-key server.key --tls-cacert ca.pem",
                ""},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {
                "0:stopped after --sessions sessions (all completed) or by a signal",
                "1:a session failed (with --sessions)",
                "2:bad usage: DIR not writable, port in use, unreadable certificates"})
final class PageServerCommand implements Callable<Integer> {

    @Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--dir", required = true, paramLabel = "DIR", description = "Where sessions are written.")
    Path dir;

    @Option(names = "--address", defaultValue = "127.0.0.1", description = "Address to bind (default ${DEFAULT-VALUE}).")
    String address;

    @Option(names = "--port", defaultValue = "27027", description = "Port (default ${DEFAULT-VALUE}; 0 picks a free one).")
    int port;

    @Option(names = "--parent-images", paramLabel = "DIR",
            description = "Previous images: PARENT/OPEN2 are answered from them and each session links to them.")
    Path parentImages;

    @Option(names = "--chain", description = "Link each session that asks PARENT to the newest completed session of "
            + "the same pid in DIR (incremental pre-dumps and migrate --to tcp://).")
    boolean chain;

    @Option(names = "--no-direct-io", description = "Write the sessions' pages files through the page cache instead "
            + "of with O_DIRECT (faster on a tmpfs, or when the images are read back at once).")
    boolean noDirectIo;

    @Option(names = "--no-splice", description = "With --transport threads and pages files written through the page "
            + "cache: copy page bytes socket -> buffer -> file instead of splicing them socket -> pipe -> file.")
    boolean noSplice;

    @Option(names = "--transport", paramLabel = "threads|netty", converter = TransportConverter.class,
            description = "What serves plain-TCP sessions: threads (default: one per session, fastest on few cores) or "
                    + "netty (event loops: few threads for thousands of sessions). TLS is always served by netty.")
    PageServer.Transport transport;

    @Option(names = "--tls-cert", paramLabel = "PEM", description = "Server certificate (PEM); enables TLS.")
    Path tlsCert;

    @Option(names = "--tls-key", paramLabel = "PEM", description = "Server private key (PEM, PKCS#8).")
    Path tlsKey;

    @Option(names = "--tls-cacert", paramLabel = "PEM",
            description = "CA whose client certificates are required (mutual TLS, as CRIU does).")
    Path tlsCaCert;

    @Option(names = "--max-sessions", paramLabel = "N", description = "Sessions served at once (default "
            + PageServer.DEFAULT_MAX_SESSIONS + "); a connection beyond that is closed at once, unread, and logged.")
    Integer maxSessions;

    @Option(names = "--max-header-pages", paramLabel = "N", description = "Largest nr_pages one header may carry.")
    Long maxHeaderPages;

    @Option(names = "--max-session-bytes", paramLabel = "SIZE", description = "Largest session, e.g. 64G.")
    DataSize maxSessionBytes;

    @Option(names = "--idle-timeout", paramLabel = "SECONDS", description = "End a session silent this long.")
    Long idleTimeoutSeconds;

    @Option(names = "--session-template", paramLabel = "TEMPLATE",
            description = "Sub-directory name of a session (see the README for the placeholders).")
    String sessionTemplate;

    @Option(names = "--sessions", paramLabel = "N", description = "Exit after N sessions have ended (like criu page-server with N=1).")
    Integer sessions;

    @Override
    public Integer call() throws Exception {
        if (!Files.isDirectory(dir) || !Files.isWritable(dir)) {
            throw CliException.badInput("--dir " + dir + " is not a writable directory: create it first (mkdir -p " + dir + ")");
        }
        PageServer.Builder builder = PageServer.builder().directory(dir).address(address).port(port);
        if (parentImages != null) {
            builder = builder.parentImages(parentImages);
        }
        builder = builder.chain(chain).directIo(!noDirectIo).splice(!noSplice);
        if (transport != null) {
            if (transport == PageServer.Transport.THREADS && tlsCert != null) {
                throw CliException.badInput("--transport threads serves plain TCP only: TLS is served by netty"
                        + " (drop --transport)");
            }
            builder = builder.transport(transport);
        }
        if (tlsCert != null || tlsKey != null) {
            if (tlsCert == null || tlsKey == null) {
                throw CliException.badInput("TLS needs both --tls-cert and --tls-key");
            }
            SslContext tls;
            try {
                tls = PageServerTls.serverFromPem(tlsCert, tlsKey, tlsCaCert);
            } catch (RuntimeException e) {
                throw CliException.badInput("cannot load TLS material: " + e.getMessage(), e);
            }
            builder = builder.tls(tls);
        }
        if (maxSessions != null) {
            if (maxSessions <= 0) {
                throw CliException.badInput("--max-sessions " + maxSessions + " must be at least 1");
            }
            builder = builder.maxSessions(maxSessions);
        }
        if (maxHeaderPages != null) {
            builder = builder.maxPagesPerHeader(maxHeaderPages);
        }
        if (maxSessionBytes != null) {
            builder = builder.maxBytesPerSession(maxSessionBytes);
        }
        if (idleTimeoutSeconds != null) {
            builder = builder.idleTimeout(Duration.ofSeconds(idleTimeoutSeconds));
        }
        if (sessionTemplate != null) {
            builder = builder.sessionDirTemplate(sessionTemplate);
        }
        PrintWriter out = spec.commandLine().getOut();
        PageServer server;
        try {
            server = builder.start();
        } catch (RuntimeException e) {
            throw CliException.badInput("cannot listen on " + address + ":" + port + ": " + e.getMessage(), e);
        }
        Runtime.getRuntime().addShutdownHook(new Thread(server::stop, "pageflux-page-server-stop"));
        for (Leftover l : server.leftovers()) {
            out.println(l.describe());
        }
        out.printf("listening on %s:%d, writing sessions into %s%s%n", server.address(), server.boundPort(), dir,
                chain ? " (chained per pid)" : "");
        out.flush();
        int[] failed = {0};
        // refused connections are not printed one by one: a flood of them would flood the output; the server
        // logs them (one warning per 10 s with the count)
        var events = server.events().filter(event -> !(event instanceof SessionEvent.Refused)).doOnNext(event -> {
            out.println(describe(event));
            out.flush();
            if (event instanceof SessionEvent.Failed) {
                failed[0]++;
            }
        }).filter(e -> e instanceof SessionEvent.Completed || e instanceof SessionEvent.Failed);
        if (sessions != null) {
            events.take(sessions).blockLast();
            server.stop();
            return failed[0] == 0 ? ExitCodes.OK : ExitCodes.FAILED;
        }
        events.blockLast();
        return ExitCodes.OK;
    }

    private static String describe(SessionEvent event) {
        if (event instanceof SessionEvent.Completed c) {
            return "session " + c.session() + " from " + c.remote() + " completed: " + c.pages() + " pages -> "
                    + c.directory().map(Path::toString).orElse("(no pages)");
        }
        if (event instanceof SessionEvent.Failed f) {
            return "session " + f.session() + " from " + f.remote() + " failed: " + f.reason();
        }
        if (event instanceof SessionEvent.Opened o) {
            return "session " + o.session() + " opened " + o.pagemap() + " pages_id=" + o.pagesId()
                    + (o.hasParent() ? " (parent found)" : "");
        }
        if (event instanceof SessionEvent.ParentChosen p) {
            return "session " + p.session() + " builds on " + p.parent().map(Path::toString).orElse("nothing (no "
                    + "earlier session of " + p.askedFor() + ")");
        }
        if (event instanceof SessionEvent.Started s) {
            return "session " + s.session() + " started from " + s.remote();
        }
        return event.toString();
    }

    /** {@code threads} / {@code netty}, case-insensitive. */
    static final class TransportConverter implements CommandLine.ITypeConverter<PageServer.Transport> {
        @Override
        public PageServer.Transport convert(String value) {
            try {
                return PageServer.Transport.valueOf(value.toUpperCase(java.util.Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new CommandLine.TypeConversionException("--transport=" + value + " is not threads or netty");
            }
        }
    }
}
