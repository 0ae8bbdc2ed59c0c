package io.pageflux.cli;

import io.pageflux.pipeline.DumpProgress;
import io.pageflux.source.DataSize;
import java.io.PrintWriter;
import java.time.Duration;
import java.util.Locale;
import java.util.function.Consumer;

/**
 * A one-line progress bar on a terminal: bytes done of the bytes the scan has selected so far,
 * rate and ETA, redrawn in place with {@code \r}. The total grows while regions are scanned, so
 * the bar can step back a little early on; that is honest, not a bug.
 */
final class ProgressBar implements Consumer<DumpProgress> {

    private static final int WIDTH = 28;

    private final PrintWriter err;
    private int lastLength;
    private boolean closed;

    ProgressBar(PrintWriter err) {
        this.err = err;
    }

    @Override
    public synchronized void accept(DumpProgress p) {
        if (closed) {
            return;
        }
        String line = render(p);
        // pad with spaces so a shorter line fully covers the previous one
        StringBuilder sb = new StringBuilder("\r").append(line);
        for (int i = line.length(); i < lastLength; i++) {
            sb.append(' ');
        }
        lastLength = line.length();
        err.print(sb);
        if (p.finished()) {
            err.println();
            closed = true;
        }
        err.flush();
    }

    /** Ends the line after a failed dump, so the error message starts on a line of its own. */
    synchronized void close() {
        if (!closed && lastLength > 0) {
            err.println();
            err.flush();
        }
        closed = true;
    }

    static String render(DumpProgress p) {
        double fraction = p.fraction();
        int filled = (int) Math.round(fraction * WIDTH);
        StringBuilder bar = new StringBuilder("[");
        for (int i = 0; i < WIDTH; i++) {
            bar.append(i < filled ? '#' : '.');
        }
        bar.append(']');
        String eta = p.finished() ? "done" : p.eta().map(d -> "ETA " + clock(d)).orElse("ETA --:--");
        return String.format(Locale.ROOT, "%s %3d%%  %s / %s  %s/s  %s%s%s", bar, Math.round(fraction * 100),
                DataSize.format(p.bytesDone()), DataSize.format(p.bytesPlanned()),
                DataSize.format((long) p.bytesPerSecond()), eta,
                p.frozen().isZero() ? "" : String.format(Locale.ROOT, "  frozen %.1f ms", p.frozen().toNanos() / 1e6),
                p.pagesVanished() > 0 ? "  vanished " + p.pagesVanished() + " pages" : "");
    }

    static String clock(Duration d) {
        long s = d.toSeconds();
        return s >= 3600 ? String.format(Locale.ROOT, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                : String.format(Locale.ROOT, "%d:%02d", s / 60, s % 60);
    }
}
