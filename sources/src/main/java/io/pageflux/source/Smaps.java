package io.pageflux.source;

import java.io.IOException;
import java.io.InputStreamReader;
import java.io.Reader;
import java.io.StringReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Parser of {@code /proc/PID/smaps}: one {@link MemoryRegion} per VMA, with its {@code VmFlags} and every
 * numeric field ({@code Rss}, {@code Swap}, ... in kB as printed; unit-less ones like {@code THPeligible}
 * as printed too).
 *
 * <p>A VMA header is {@code start-end perms offset major:minor inode [path]}; the path is everything after
 * the padding that follows the inode, so it may hold spaces and the kernel's {@code " (deleted)"} suffix,
 * and is the empty string for anonymous memory. Field lines with a value the parser does not know (not a
 * number) are ignored, so a newer kernel's additions do not break parsing.
 *
 * <p>The grammar, exactly (it used to be three regular expressions; the hand-written scanner below accepts
 * the same lines, yields the same values and rejects the same input with the same messages, at a fraction of
 * the cost in a fresh JVM, where every dump parses smaps once while the interpreter is still cold):
 * <pre>
 * header = hex "-" hex " " perms " " hex " " hex ":" hex " " digits [ " "+ path ]
 *          hex: [0-9a-f]+   digits: [0-9]+   perms: any 4 characters but whitespace (checked afterwards
 *          against [r-][w-][x-][ps])   path: the rest of the line (no U+0085, U+2028, U+2029)
 * field  = name ":" value      name: [A-Za-z_][A-Za-z0-9_]*   value: the rest of the line (same exclusions)
 * number = ws* digits [" kB"] ws*   (a field value kept in {@link MemoryRegion#fields()})   ws: [ \t\n\x0B\f\r]
 * </pre>
 * Lines end at {@code \n}, {@code \r} or {@code \r\n}; blank lines are skipped.
 */
public final class Smaps {

    /** Content longer than this is cut in error messages. */
    private static final int QUOTE_MAX = 160;
    /** Initial size of the line buffer (chars); a longer line grows it. */
    private static final int BUFFER_CHARS = 16 * 1024;

    private Smaps() {
    }

    /**
     * The regions of a live process, ascending.
     *
     * @throws ProcessGoneException       the pid does not exist (any more), or the process exited (zombie)
     * @throws PermissionDeniedException  the kernel refuses to show this process's maps (needs CAP_SYS_PTRACE)
     * @throws PagefluxException          the pid is a kernel thread (no user address space), or the kernel's
     *                                    text could not be parsed
     */
    public static List<MemoryRegion> read(int pid) {
        String file = "/proc/" + pid + "/smaps";
        List<MemoryRegion> regions;
        // InputStreamReader replaces invalid UTF-8 in a path instead of failing (paths are bytes, not text)
        try (Reader in = new InputStreamReader(Files.newInputStream(Path.of(file)), StandardCharsets.UTF_8)) {
            regions = parse(in, file);
        } catch (IOException | UncheckedIOException e) {
            IOException io = e instanceof UncheckedIOException u ? u.getCause() : (IOException) e;
            throw ProcAccess.fromIo(pid, file, io);
        } catch (IllegalArgumentException e) {
            throw new PagefluxException("pid=" + pid + " " + e.getMessage(), e);
        }
        if (regions.isEmpty()) {
            // no mm: a kernel thread always, or a process that has just exited (zombie)
            ProcStat stat = ProcStat.read(pid);
            if (stat == null) {
                throw new ProcessGoneException(pid, "file=" + file + " was empty and the process is gone");
            }
            if (stat.kernelThread()) {
                throw new PagefluxException("pid=" + pid
                        + " is a kernel thread (no user address space): nothing to dump; pick a user process");
            }
            throw new ProcessGoneException(pid, "file=" + file + " is empty: the process has exited (state="
                    + stat.state() + ") and has no address space left");
        }
        return regions;
    }

    /**
     * The regions described by smaps text, ascending.
     *
     * @throws IllegalArgumentException the text is not smaps: the message names the line number and content
     */
    public static List<MemoryRegion> parse(String smapsText) {
        try {
            return parse(new StringReader(smapsText), "text");
        } catch (IOException e) {
            throw new UncheckedIOException(e);          // a StringReader does not fail
        }
    }

    static List<MemoryRegion> parse(Reader reader, String source) throws IOException {
        Lines in = new Lines(reader);
        int[] header = new int[HEADER_MARKS];
        int[] digits = new int[1];
        List<MemoryRegion> regions = new ArrayList<>();
        Builder current = null;
        int lineNo = 0;
        while (in.next()) {
            lineNo++;
            char[] c = in.buf;
            int from = in.start;
            int to = in.end;
            if (blank(c, from, to)) {
                continue;
            }
            if (matchHeader(c, from, to, header)) {
                if (current != null) {
                    add(regions, current.build(source), source, current.line, current.header);
                }
                current = new Builder(c, header, new String(c, from, to - from), lineNo, source);
                continue;
            }
            int colon = matchFieldName(c, from, to);
            int value = colon + 1;
            // a number has no line separator in it; only other values need the (per character) look
            int digitsEnd = colon < 0 ? -1 : matchNumber(c, value, to, digits);
            if (colon < 0 || (digitsEnd < 0 && hasLineSeparator(c, value, to))) {
                throw malformed(source, lineNo, new String(c, from, to - from), "neither a VMA header (start-end "
                        + "perms offset dev inode path) nor a 'Name: value' field");
            }
            if (current == null) {
                throw malformed(source, lineNo, new String(c, from, to - from), "a field before the first VMA header");
            }
            if (isVmFlags(c, from, colon)) {
                current.vmFlags = vmFlags(c, value, to);
            } else if (digitsEnd >= 0) {
                long number = parseDecimal(c, digits[0], digitsEnd);
                if (number < 0) {
                    throw malformed(source, lineNo, new String(c, from, to - from), "value out of range");
                }
                current.fields.put(new String(c, from, colon - from), number);
            }
            // else: a field this parser does not know the format of; kept out of 'fields' on purpose
        }
        if (current != null) {
            add(regions, current.build(source), source, current.line, current.header);
        }
        return List.copyOf(regions);
    }

    // ------------------------------------------------------------------ the grammar, on a line c[from, to)

    /** Offsets {@link #matchHeader} fills in: start and end of each column. */
    private static final int START_FROM = 0, START_TO = 1, END_FROM = 2, END_TO = 3, PERMS_FROM = 4, PERMS_TO = 5,
            OFFSET_FROM = 6, OFFSET_TO = 7, DEVICE_FROM = 8, DEVICE_TO = 9, INODE_FROM = 10, INODE_TO = 11,
            PATH_FROM = 12, LINE_TO = 13, HEADER_MARKS = 14;

    /**
     * Whether the line is a VMA header; if so, {@code marks} holds its columns (path: from
     * {@code marks[PATH_FROM]} to the end of the line, or -1 when there is no path column at all).
     */
    static boolean matchHeader(char[] c, int from, int to, int[] marks) {
        marks[LINE_TO] = to;
        int p = from;
        marks[START_FROM] = p;
        p = hexRun(c, p, to);
        if (p == marks[START_FROM] || p == to || c[p] != '-') {
            return false;
        }
        marks[START_TO] = p;
        marks[END_FROM] = ++p;
        p = hexRun(c, p, to);
        if (p == marks[END_FROM] || p == to || c[p] != ' ') {
            return false;
        }
        marks[END_TO] = p;
        marks[PERMS_FROM] = ++p;
        // four code points, none of them whitespace ([^ \t\n\x0B\f\r])
        for (int k = 0; k < 4; k++) {
            if (p >= to) {
                return false;
            }
            int cp = Character.codePointAt(c, p, to);
            if (isSpace(cp)) {
                return false;
            }
            p += Character.charCount(cp);
        }
        if (p == to || c[p] != ' ') {
            return false;
        }
        marks[PERMS_TO] = p;
        marks[OFFSET_FROM] = ++p;
        p = hexRun(c, p, to);
        if (p == marks[OFFSET_FROM] || p == to || c[p] != ' ') {
            return false;
        }
        marks[OFFSET_TO] = p;
        marks[DEVICE_FROM] = ++p;
        int major = p;
        p = hexRun(c, p, to);
        if (p == major || p == to || c[p] != ':') {
            return false;
        }
        int minor = ++p;
        p = hexRun(c, p, to);
        if (p == minor || p == to || c[p] != ' ') {
            return false;
        }
        marks[DEVICE_TO] = p;
        marks[INODE_FROM] = ++p;
        while (p < to && c[p] >= '0' && c[p] <= '9') {
            p++;
        }
        if (p == marks[INODE_FROM]) {
            return false;
        }
        marks[INODE_TO] = p;
        if (p == to) {
            marks[PATH_FROM] = -1;
            return true;
        }
        if (c[p] != ' ') {
            return false;
        }
        while (p < to && c[p] == ' ') {
            p++;
        }
        if (hasLineSeparator(c, p, to)) {
            return false;
        }
        marks[PATH_FROM] = p;
        return true;
    }

    /**
     * The index of the colon when the line starts with {@code name:}, else -1 (the value still has to be
     * free of line separators for the line to be a field).
     */
    static int matchFieldName(char[] c, int from, int to) {
        if (from == to) {
            return -1;
        }
        char first = c[from];
        if (!((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z') || first == '_')) {
            return -1;
        }
        int p = from + 1;
        // the checks are written out, not called: a fresh JVM interprets this once per character of every name
        while (p < to) {
            char ch = c[p];
            if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_') {
                p++;
            } else {
                break;
            }
        }
        return p < to && c[p] == ':' ? p : -1;
    }

    /**
     * Matches {@code ws* digits [" kB"] ws*} over the whole of {@code c[from, to)}: the end of the digits,
     * with their start in {@code digitsFrom[0]}; -1 when the value is not a number.
     */
    static int matchNumber(char[] c, int from, int to, int[] digitsFrom) {
        int p = from;
        while (p < to && (c[p] == ' ' || (c[p] >= '\t' && c[p] <= '\r'))) {
            p++;
        }
        int digits = p;
        while (p < to && c[p] >= '0' && c[p] <= '9') {
            p++;
        }
        if (p == digits) {
            return -1;
        }
        int digitsEnd = p;
        if (to - p >= 3 && c[p] == ' ' && c[p + 1] == 'k' && c[p + 2] == 'B') {
            p += 3;
        }
        while (p < to && (c[p] == ' ' || (c[p] >= '\t' && c[p] <= '\r'))) {
            p++;
        }
        if (p != to) {
            return -1;
        }
        digitsFrom[0] = digits;
        return digitsEnd;
    }

    /** {@code VmFlags}' value: what {@code value.trim().split("\\s+")} gives, without empty names. */
    private static Set<String> vmFlags(char[] c, int from, int to) {
        // String.trim: everything up to U+0020 goes at both ends
        while (from < to && c[from] <= ' ') {
            from++;
        }
        while (to > from && c[to - 1] <= ' ') {
            to--;
        }
        Set<String> flags = new HashSet<>();
        int p = from;
        while (p < to) {
            while (p < to && isSpace(c[p])) {
                p++;
            }
            int flag = p;
            while (p < to && !isSpace(c[p])) {
                p++;
            }
            if (p > flag) {
                flags.add(new String(c, flag, p - flag));
            }
        }
        return flags;
    }

    private static int hexRun(char[] c, int p, int to) {
        while (p < to && ((c[p] >= '0' && c[p] <= '9') || (c[p] >= 'a' && c[p] <= 'f'))) {
            p++;
        }
        return p;
    }

    private static boolean isVmFlags(char[] c, int from, int to) {
        return to - from == 7 && c[from] == 'V' && c[from + 1] == 'm' && c[from + 2] == 'F' && c[from + 3] == 'l'
                && c[from + 4] == 'a' && c[from + 5] == 'g' && c[from + 6] == 's';
    }

    /** {@code \s} of a (non-Unicode) regular expression: space, tab, newline, VT, form feed, carriage return. */
    private static boolean isSpace(int ch) {
        return ch == ' ' || (ch >= '\t' && ch <= '\r');
    }

    /** Line terminators besides {@code \n} and {@code \r} (which end a line before it gets here). */
    private static boolean hasLineSeparator(char[] c, int from, int to) {
        for (int p = from; p < to; p++) {
            char ch = c[p];
            if (ch >= '\u0085' && (ch == '\u0085' || ch == '\u2028' || ch == '\u2029')) {
                return true;
            }
        }
        return false;
    }

    /** {@code String.isBlank()} of the line. */
    private static boolean blank(char[] c, int from, int to) {
        if (from < to && c[from] > ' ' && c[from] < '\u0080') {
            return false;                           // every real line: no calls for it
        }
        int p = from;
        while (p < to) {
            int cp = Character.codePointAt(c, p, to);
            if (!Character.isWhitespace(cp)) {
                return false;
            }
            p += Character.charCount(cp);
        }
        return true;
    }

    /** Unsigned hex; up to 16 digits always fit, longer ones go to the JDK (its range check, its message). */
    private static long parseHex(char[] c, int from, int to) {
        if (to - from > 16) {
            return Long.parseUnsignedLong(new String(c, from, to - from), 16);
        }
        long value = 0;
        for (int p = from; p < to; p++) {
            char ch = c[p];
            value = (value << 4) | (ch <= '9' ? ch - '0' : ch - 'a' + 10);
        }
        return value;
    }

    /** A non-negative decimal that fits a signed long ({@code Long.parseLong}), or -1. */
    private static long parseDecimal(char[] c, int from, int to) {
        long value = 0;
        for (int p = from; p < to; p++) {
            int digit = c[p] - '0';
            if (value > (Long.MAX_VALUE - digit) / 10) {
                return -1;
            }
            value = value * 10 + digit;
        }
        return value;
    }

    // ------------------------------------------------------------------ regions

    private static void add(List<MemoryRegion> regions, MemoryRegion region, String source, int lineNo, String header) {
        if (!regions.isEmpty()) {
            MemoryRegion previous = regions.get(regions.size() - 1);
            if (Long.compareUnsigned(region.start(), previous.end()) < 0) {
                throw malformed(source, lineNo, header, String.format(
                        "VMA overlaps or precedes the previous one (previous=%x-%x): smaps lists VMAs in ascending order",
                        previous.start(), previous.end()));
            }
        }
        regions.add(region);
    }

    static IllegalArgumentException malformed(String source, int lineNo, String line, String reason) {
        String quoted = line.length() > QUOTE_MAX ? line.substring(0, QUOTE_MAX) + "..." : line;
        return new IllegalArgumentException("malformed smaps: source=" + source + " line=" + lineNo + " content='"
                + quoted + "' reason=" + reason);
    }

    /** One VMA being collected: its header and the fields seen so far. */
    private static final class Builder {
        final String header;
        final int line;
        final long start;
        final long end;
        final String perms;
        final long offset;
        final String device;
        final long inode;
        final String path;
        final Map<String, Long> fields = new HashMap<>();
        Set<String> vmFlags = Set.of();

        Builder(char[] c, int[] m, String header, int line, String source) {
            this.header = header;
            this.line = line;
            try {
                start = parseHex(c, m[START_FROM], m[START_TO]);
                end = parseHex(c, m[END_FROM], m[END_TO]);
                offset = parseHex(c, m[OFFSET_FROM], m[OFFSET_TO]);
                inode = parseInode(c, m[INODE_FROM], m[INODE_TO]);
            } catch (NumberFormatException e) {
                throw malformed(source, line, header, "number out of range (" + e.getMessage() + ")");
            }
            perms = new String(c, m[PERMS_FROM], m[PERMS_TO] - m[PERMS_FROM]);
            if (!validPerms(perms)) {
                throw malformed(source, line, header, "permissions must look like rw-p or r-xs, got '" + perms + "'");
            }
            if (Long.compareUnsigned(end, start) <= 0) {
                throw malformed(source, line, header, "end address is not above start address");
            }
            device = new String(c, m[DEVICE_FROM], m[DEVICE_TO] - m[DEVICE_FROM]);
            int pathFrom = m[PATH_FROM];
            String p = pathFrom < 0 ? "" : new String(c, pathFrom, m[LINE_TO] - pathFrom);
            path = p.isBlank() ? "" : p;
        }

        /** Unsigned decimal; up to 19 digits always fit, longer ones go to the JDK for its range check. */
        private static long parseInode(char[] c, int from, int to) {
            if (to - from > 19) {
                return Long.parseUnsignedLong(new String(c, from, to - from));
            }
            long value = 0;
            for (int p = from; p < to; p++) {
                value = value * 10 + (c[p] - '0');
            }
            return value;
        }

        /** {@code [r-][w-][x-][ps]}. */
        private static boolean validPerms(String perms) {
            if (perms.length() != 4) {
                return false;
            }
            char r = perms.charAt(0), w = perms.charAt(1), x = perms.charAt(2), s = perms.charAt(3);
            return (r == 'r' || r == '-') && (w == 'w' || w == '-') && (x == 'x' || x == '-') && (s == 'p' || s == 's');
        }

        MemoryRegion build(String source) {
            try {
                return new MemoryRegion(start, end, perms, offset, device, inode, path, vmFlags, fields);
            } catch (IllegalArgumentException e) {
                throw malformed(source, line, header, e.getMessage());
            }
        }
    }

    /**
     * The lines of a {@link Reader} as ranges of one reused buffer, with {@code BufferedReader.readLine}'s rules
     * (ends at {@code \n}, {@code \r} or {@code \r\n}; a last line without terminator counts), but without a
     * {@code String} per line: only the few columns kept become strings.
     */
    private static final class Lines {
        private final Reader in;
        char[] buf = new char[BUFFER_CHARS];
        /** The current line: {@code buf[start, end)}. */
        int start;
        int end;
        /** Chars read but not yet returned: {@code buf[pos, limit)}. */
        private int pos;
        private int limit;
        private boolean eof;
        /** The last line ended with {@code \r}: a {@code \n} right after it belongs to the same terminator. */
        private boolean skipLf;

        Lines(Reader in) {
            this.in = in;
        }

        boolean next() throws IOException {
            if (skipLf) {
                if (pos == limit) {
                    fill();
                }
                if (pos < limit && buf[pos] == '\n') {
                    pos++;
                }
                skipLf = false;
            }
            int scan = pos;
            while (true) {
                char[] b = buf;
                int n = limit;
                for (int i = scan; i < n; i++) {
                    char ch = b[i];
                    if (ch <= '\r' && (ch == '\n' || ch == '\r')) {
                        start = pos;
                        end = i;
                        pos = i + 1;
                        skipLf = ch == '\r';
                        return true;
                    }
                }
                if (eof) {
                    if (pos < limit) {
                        start = pos;
                        end = limit;
                        pos = limit;
                        return true;
                    }
                    return false;
                }
                scan = limit - pos;     // where the search goes on once fill() has moved the chars down
                fill();
                scan += pos;
            }
        }

        /** Moves the unread chars to the front (growing the buffer if they fill it) and reads more after them. */
        private void fill() throws IOException {
            int unread = limit - pos;
            if (pos > 0) {
                System.arraycopy(buf, pos, buf, 0, unread);
                pos = 0;
                limit = unread;
            }
            if (limit == buf.length) {
                buf = Arrays.copyOf(buf, buf.length * 2);
            }
            int n = in.read(buf, limit, buf.length - limit);
            if (n < 0) {
                eof = true;
            } else {
                limit += n;
            }
        }
    }
}
