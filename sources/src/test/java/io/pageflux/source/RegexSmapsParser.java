package io.pageflux.source;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.Reader;
import java.io.StringReader;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The regular-expression parser {@link Smaps} used before its hand-written scanner, kept unchanged as the
 * reference the scanner is checked against ({@link SmapsGrammarTest}): the same input must give the same
 * regions or the same error. Below, the original description.
 *
 * <p>Parser of {@code /proc/PID/smaps}: one {@link MemoryRegion} per VMA, with its {@code VmFlags} and every
 * numeric field ({@code Rss}, {@code Swap}, ... in kB as printed; unit-less ones like {@code THPeligible}
 * as printed too).
 *
 * <p>A VMA header is {@code start-end perms offset major:minor inode [path]}; the path is everything after
 * the padding that follows the inode, so it may hold spaces and the kernel's {@code " (deleted)"} suffix,
 * and is the empty string for anonymous memory. Field lines with a value the parser does not know (not a
 * number) are ignored, so a newer kernel's additions do not break parsing.
 */
final class RegexSmapsParser {

    private static final Pattern HEADER = Pattern.compile(
            "([0-9a-f]+)-([0-9a-f]+) (\\S{4}) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) ([0-9]+)(?: +(.*))?");
    private static final Pattern FIELD = Pattern.compile("([A-Za-z_][A-Za-z0-9_]*):(.*)");
    private static final Pattern NUMBER = Pattern.compile("\\s*([0-9]+)(?: kB)?\\s*");
    /** Content longer than this is cut in error messages. */
    private static final int QUOTE_MAX = 160;

    private RegexSmapsParser() {
    }

    /**
     * The regions described by smaps text, ascending.
     *
     * @throws IllegalArgumentException the text is not smaps: the message names the line number and content
     */
    public static List<MemoryRegion> parse(String smapsText) {
        try {
            return parse(new BufferedReader(new StringReader(smapsText)), "text");
        } catch (IOException e) {
            throw new UncheckedIOException(e);          // a StringReader does not fail
        }
    }

    static List<MemoryRegion> parse(Reader reader, String source) throws IOException {
        BufferedReader in = reader instanceof BufferedReader b ? b : new BufferedReader(reader);
        List<MemoryRegion> regions = new ArrayList<>();
        Builder current = null;
        int lineNo = 0;
        String line;
        while ((line = in.readLine()) != null) {
            lineNo++;
            if (line.isBlank()) {
                continue;
            }
            Matcher h = HEADER.matcher(line);
            if (h.matches()) {
                if (current != null) {
                    add(regions, current.build(source), source, current.line, current.header);
                }
                current = new Builder(h, line, lineNo, source);
                continue;
            }
            Matcher f = FIELD.matcher(line);
            if (!f.matches()) {
                throw malformed(source, lineNo, line, "neither a VMA header (start-end perms offset dev inode path) "
                        + "nor a 'Name: value' field");
            }
            if (current == null) {
                throw malformed(source, lineNo, line, "a field before the first VMA header");
            }
            String name = f.group(1);
            String value = f.group(2);
            if (name.equals("VmFlags")) {
                Set<String> flags = new HashSet<>();
                for (String flag : value.trim().split("\\s+")) {
                    if (!flag.isEmpty()) {
                        flags.add(flag);
                    }
                }
                current.vmFlags = flags;
            } else {
                Matcher n = NUMBER.matcher(value);
                if (n.matches()) {
                    try {
                        current.fields.put(name, Long.parseLong(n.group(1)));
                    } catch (NumberFormatException e) {
                        throw malformed(source, lineNo, line, "value out of range");
                    }
                }
                // else: a field this parser does not know the format of; kept out of 'fields' on purpose
            }
        }
        if (current != null) {
            add(regions, current.build(source), source, current.line, current.header);
        }
        return List.copyOf(regions);
    }

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

        Builder(Matcher h, String header, int line, String source) {
            this.header = header;
            this.line = line;
            try {
                start = Long.parseUnsignedLong(h.group(1), 16);
                end = Long.parseUnsignedLong(h.group(2), 16);
                offset = Long.parseUnsignedLong(h.group(4), 16);
                inode = Long.parseUnsignedLong(h.group(6));
            } catch (NumberFormatException e) {
                throw malformed(source, line, header, "number out of range (" + e.getMessage() + ")");
            }
            perms = h.group(3);
            if (!perms.matches("[r-][w-][x-][ps]")) {
                throw malformed(source, line, header, "permissions must look like rw-p or r-xs, got '" + perms + "'");
            }
            if (Long.compareUnsigned(end, start) <= 0) {
                throw malformed(source, line, header, "end address is not above start address");
            }
            device = h.group(5);
            path = h.group(7) == null ? "" : h.group(7).isBlank() ? "" : h.group(7);
        }

        MemoryRegion build(String source) {
            try {
                return new MemoryRegion(start, end, perms, offset, device, inode, path, vmFlags, fields);
            } catch (IllegalArgumentException e) {
                throw malformed(source, line, header, e.getMessage());
            }
        }
    }
}
