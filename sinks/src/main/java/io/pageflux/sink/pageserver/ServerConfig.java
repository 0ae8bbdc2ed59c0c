package io.pageflux.sink.pageserver;

import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * A page server's settings, checked once at {@link PageServer.Builder#start()}.
 *
 * @param directory     absolute, normalized; every session directory is a direct child
 * @param parentLink    the {@code parent} link target written into each session directory
 *                      (relative: from {@code directory/<session>} to the parent images)
 * @param chain         link each session that asks PARENT to the newest completed session of its pid
 * @param maxSessions   connections served at once; one more is closed at once, unread
 * @param splice        plain TCP: page bytes of large runs go socket → pages file with splice(2) when the
 *                      pages file is written through the page cache
 */
record ServerConfig(Path directory, Optional<Path> parentImages, Optional<Path> parentLink, long maxPagesPerHeader,
                    long maxBytesPerSession, Duration idleTimeout, String template, int pageSize, boolean chain,
                    boolean directIo, int maxSessions, boolean splice) {

    static final String DEFAULT_TEMPLATE = "{pid}-{time}-{seq}";
    private static final DateTimeFormatter TIME = DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss").withZone(ZoneOffset.UTC);
    private static final Pattern SAFE_NAME = Pattern.compile("[A-Za-z0-9_][A-Za-z0-9_.+-]*");

    /** Fills {pid}, {time} (UTC, {@code yyyyMMdd-HHmmss}) and {seq}; the result is one safe path segment. */
    String sessionName(String pid, Instant started, long seq) {
        return sessionName(pid, started, Long.toString(seq));
    }

    /** As {@link #sessionName(String, Instant, long)} with any {seq} text, e.g. {@code r3} for a recovered session. */
    String sessionName(String pid, Instant started, String seq) {
        String name = render(template, pid, started, seq);
        if (!SAFE_NAME.matcher(name).matches()) {
            // the template was checked with sample values; a value from the wire cannot reach here unchecked
            throw new IllegalStateException("session directory name '" + name + "' from template '" + template
                    + "' is not a plain name");
        }
        return name;
    }

    static String render(String template, String pid, Instant started, String seq) {
        return template.replace("{pid}", pid).replace("{time}", TIME.format(started)).replace("{seq}", seq);
    }

    /** Rejects templates that could name anything but a plain child of the directory. */
    static String checkTemplate(String template) {
        String sample = render(template, "123", Instant.EPOCH, "1");
        if (!SAFE_NAME.matcher(sample).matches() || sample.length() > 200) {
            throw new IllegalArgumentException("session directory template '" + template + "' must give a plain"
                    + " directory name (letters, digits, _ . + -, not starting with a dot, no /) with placeholders"
                    + " {pid}, {time}, {seq}; e.g. " + DEFAULT_TEMPLATE);
        }
        return template;
    }

    /** Defence in depth: a session directory must be a direct child of the server directory. */
    static void checkInside(Path directory, Path target) {
        Path t = target.toAbsolutePath().normalize();
        if (!directory.equals(t.getParent())) {
            throw new IllegalStateException("refusing to write outside the server directory: dir=" + directory
                    + " target=" + t);
        }
    }
}
