package io.pageflux.cli;

import java.nio.file.Path;
import java.util.Locale;

/**
 * Where {@code dump} sends pages: {@code --out DIR} or {@code --to URI}.
 *
 * @param kind   a directory of CRIU images, a page server, standard output, or nowhere
 * @param dir    the image directory for {@link Kind#DIR}, else {@code null}
 * @param server {@code tcp://HOST:PORT} for {@link Kind#TCP}, else {@code null}
 */
record Destination(Kind kind, Path dir, String server) {

    enum Kind { DIR, NULL, TCP, STDOUT }

    static final String FORMS = "dir:PATH (a CRIU image directory), tcp://HOST:PORT (a CRIU page server), "
            + "- (the single-stream format on stdout) or null (discard the pages)";

    static Destination directory(Path dir) {
        return new Destination(Kind.DIR, dir, null);
    }

    /**
     * Parses a {@code --to} URI.
     *
     * @throws CliException (bad input) naming the URI and the accepted forms
     */
    static Destination parse(String uri) {
        String u = uri.trim();
        if (u.startsWith("dir:")) {
            String path = u.substring("dir:".length());
            if (path.startsWith("//")) {
                // dir:///tmp/d1 is a natural spelling too
                path = path.substring(2);
            }
            if (path.isEmpty()) {
                throw CliException.badInput("--to " + uri + ": the directory is missing, e.g. --to dir:/tmp/d1");
            }
            return directory(Path.of(path));
        }
        if (u.equals("null") || u.equals("null:")) {
            return new Destination(Kind.NULL, null, null);
        }
        if (u.equals("-")) {
            return new Destination(Kind.STDOUT, null, null);
        }
        String lower = u.toLowerCase(Locale.ROOT);
        if (lower.startsWith("tcp://")) {
            String hostPort = u.substring("tcp://".length());
            int colon = hostPort.lastIndexOf(':');
            if (colon <= 0 || colon == hostPort.length() - 1 || !hostPort.substring(colon + 1).matches("\\d{1,5}")) {
                throw CliException.badInput("--to " + uri + ": a page server is tcp://HOST:PORT, e.g. tcp://127.0.0.1:27027");
            }
            return new Destination(Kind.TCP, null, u);
        }
        throw CliException.badInput("--to " + uri + ": unknown destination; use " + FORMS);
    }

    String describe() {
        return switch (kind) {
            case DIR -> "dir:" + dir;
            case TCP -> server;
            case STDOUT -> "-";
            case NULL -> "null";
        };
    }
}
