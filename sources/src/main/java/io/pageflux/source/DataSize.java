package io.pageflux.source;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** A number of bytes, with binary-unit constructors and a parser for {@code 64M}, {@code 4MiB}, {@code 1g}. */
public record DataSize(long bytes) implements Comparable<DataSize> {

    private static final Pattern FORMAT = Pattern.compile("(\\d+)\\s*([kmgt]?)(i?b)?", Pattern.CASE_INSENSITIVE);

    public DataSize {
        if (bytes < 0) {
            throw new IllegalArgumentException("size must not be negative: bytes=" + bytes);
        }
    }

    public static DataSize ofBytes(long bytes) {
        return new DataSize(bytes);
    }

    public static DataSize ofKibibytes(long kib) {
        return new DataSize(Math.multiplyExact(kib, 1024L));
    }

    public static DataSize ofMebibytes(long mib) {
        return new DataSize(Math.multiplyExact(mib, 1024L * 1024));
    }

    public static DataSize ofGibibytes(long gib) {
        return new DataSize(Math.multiplyExact(gib, 1024L * 1024 * 1024));
    }

    public static DataSize ofTebibytes(long tib) {
        return new DataSize(Math.multiplyExact(tib, 1024L * 1024 * 1024 * 1024));
    }

    /**
     * Parses {@code 123}, {@code 64k}, {@code 64K}, {@code 64KiB}, {@code 4M}, {@code 4MB}, {@code 2G}, {@code 1T}.
     * Units are binary (K = 1024).
     *
     * @throws IllegalArgumentException naming the text and the accepted forms
     */
    public static DataSize parse(String text) {
        Matcher m = FORMAT.matcher(text.trim());
        if (!m.matches()) {
            throw new IllegalArgumentException("not a size: '" + text
                    + "' (use a whole number with an optional unit K, M, G or T, e.g. 64M)");
        }
        long n = Long.parseLong(m.group(1));
        return switch (m.group(2).toLowerCase(Locale.ROOT)) {
            case "k" -> ofKibibytes(n);
            case "m" -> ofMebibytes(n);
            case "g" -> ofGibibytes(n);
            case "t" -> ofTebibytes(n);
            default -> ofBytes(n);
        };
    }

    public long pages(long pageSize) {
        return bytes / pageSize;
    }

    @Override
    public int compareTo(DataSize o) {
        return Long.compare(bytes, o.bytes);
    }

    /** {@code 64 MiB}, {@code 1.5 GiB}, {@code 512 B}. */
    @Override
    public String toString() {
        return format(bytes);
    }

    public static String format(long bytes) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
        double v = bytes;
        int u = 0;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        if (u == 0 || v == Math.rint(v)) {
            return String.format(Locale.ROOT, "%d %s", (long) v, units[u]);
        }
        return String.format(Locale.ROOT, "%.1f %s", v, units[u]);
    }
}
