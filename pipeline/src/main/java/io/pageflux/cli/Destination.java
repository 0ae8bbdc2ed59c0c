package io.pageflux.cli;

import java.nio.file.Path;
import java.util.Locale;

/**
 * Where {@code dump} sends pages: {@code --out DIR} or {@code --to URI}.
 *
 * @param kind a directory of CRIU images, or nowhere (measuring the read side)
 * @param dir  the image directory for {@link Kind#DIR}, else {@code null}
 */
record Destination(Kind kind, Path dir) {

    enum Kind { DIR, NULL }

    static final String FORMS = "dir:PATH (a CRIU image directory) or null (discard the pages)";

    static Destination directory(Path dir) {
        return new Destination(Kind.DIR, dir);
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
            return new Destination(Kind.NULL, null);
        }
        String lower = u.toLowerCase(Locale.ROOT);
        if (lower.startsWith("tcp:") || lower.startsWith("tls:")) {
            throw CliException.badInput("--to " + uri + ": sending to a page server is not supported yet; use "
                    + FORMS);
        }
        if (u.equals("-")) {
            throw CliException.badInput("--to -: streaming images to stdout is not supported yet; use " + FORMS);
        }
        throw CliException.badInput("--to " + uri + ": unknown destination; use " + FORMS);
    }

    String describe() {
        return kind == Kind.DIR ? "dir:" + dir : "null";
    }
}
