package io.pageflux.source.incremental;

import io.pageflux.source.PagefluxException;
import java.util.Locale;
import java.util.Objects;
import java.util.Optional;
import java.util.OptionalLong;

/**
 * Which {@link PageChangeDetector} an incremental dump uses ({@code --change-detection auto|soft-dirty|digest}),
 * decided once per iteration by {@link #choose}.
 */
public enum ChangeDetection {

    /** Soft-dirty bits where the kernel has them and the iteration can use them, page digests otherwise. */
    AUTO("auto"),
    /** Soft-dirty bits; an error on a kernel without them. */
    SOFT_DIRTY("soft-dirty"),
    /** Page digests, always (soft-dirty bits are left alone). */
    DIGEST("digest");

    private final String cliName;

    ChangeDetection(String cliName) {
        this.cliName = cliName;
    }

    public String cliName() {
        return cliName;
    }

    /**
     * @throws IllegalArgumentException for anything but {@code auto}, {@code soft-dirty}, {@code digest}
     */
    public static ChangeDetection fromCli(String name) {
        for (ChangeDetection c : values()) {
            if (c.cliName.equals(name.toLowerCase(Locale.ROOT))) {
                return c;
            }
        }
        throw new IllegalArgumentException("unknown change detection '" + name + "': use auto, soft-dirty or digest");
    }

    /**
     * The detector of one iteration and why it was chosen (when it is not the obvious one).
     *
     * @param detector the detector
     * @param reason   why soft-dirty bits are not used (or only cleared), if so
     */
    public record Choice(PageChangeDetector detector, Optional<String> reason) {
        public Choice {
            Objects.requireNonNull(detector, "detector");
            Objects.requireNonNull(reason, "reason");
        }
    }

    /**
     * Chooses the detector of one iteration.
     * <ul>
     *   <li>{@link #DIGEST}: page digests.</li>
     *   <li>{@link #SOFT_DIRTY} on a kernel without soft-dirty bits, or with a target that is not frozen for
     *       the scan: an error ({@link SoftDirtyUnsupportedException}); {@link #AUTO}: page digests, with the
     *       reason.</li>
     *   <li>Otherwise, if the parent has pages but its dump did not clear the bits
     *       ({@link PageDigests#softDirtyCleared()} false: made with page digests, by CRIU, or an older
     *       pageflux), or if the last clear was not the parent's ({@code lastClear}: a branched chain, a dump that
     *       failed after clearing), a clear bit would not mean "unchanged since the parent": page digests this
     *       time, and the bits are cleared while frozen so that the next iteration can use them. Else
     *       soft-dirty.</li>
     * </ul>
     *
     * @param pid        the target
     * @param kernel     the kernel's soft-dirty bits ({@link SoftDirty#kernel()})
     * @param frozen     whether the target is frozen while its pages are scanned (pre-dump and dump modes)
     * @param parent     the parent's digests ({@link PageDigests#empty()} without a usable parent)
     * @param parentName the parent for messages ({@code dir=...}, or "the previous iteration")
     * @param lastClear  the {@code dump_uptime} of the completed dump that last cleared the bits of {@code pid}
     *                   ({@link SoftDirtyLedger#lastClear}); soft-dirty holes need it to be the parent's
     */
    public Choice choose(int pid, SoftDirty.Kernel kernel, boolean frozen, PageDigests parent, String parentName,
                         OptionalLong lastClear) {
        Objects.requireNonNull(kernel, "kernel");
        Objects.requireNonNull(parent, "parent");
        if (this == DIGEST) {
            return new Choice(new DigestDetector(parent, pid, null), Optional.empty());
        }
        Optional<String> unusable = unusable(kernel, frozen);
        if (unusable.isPresent()) {
            requireUsable(pid, kernel, frozen);
            return new Choice(new DigestDetector(parent, pid, null), Optional.of(unusable.get() + "; page digests used"));
        }
        String then = ": page digests used this time; the bits were cleared for the next iteration";
        if (parent.pages() > 0 && !parent.softDirtyCleared()) {
            return new Choice(new DigestDetector(parent, pid, kernel), Optional.of("parent " + parentName
                    + " did not clear the soft-dirty bits while frozen (made with page digests, by CRIU or by an older"
                    + " pageflux), so a clear bit says nothing about it" + then));
        }
        if (parent.pages() > 0 && lastClear.isEmpty()) {
            return new Choice(new DigestDetector(parent, pid, kernel), Optional.of("no record that parent " + parentName
                    + " (dump_uptime=" + parent.dumpUptimeMicros() + ") made the last clear of the soft-dirty bits of"
                    + " pid=" + pid + " (a later dump cleared them and did not complete, or the record is gone)" + then));
        }
        if (parent.pages() > 0 && lastClear.getAsLong() != parent.dumpUptimeMicros()) {
            return new Choice(new DigestDetector(parent, pid, kernel), Optional.of("the soft-dirty bits of pid=" + pid
                    + " were cleared after parent " + parentName + " (dump_uptime=" + parent.dumpUptimeMicros()
                    + ") by the dump with dump_uptime=" + lastClear.getAsLong() + " (a branched chain)" + then));
        }
        return new Choice(new SoftDirtyDetector(parent, pid, kernel), Optional.empty());
    }

    /**
     * Fails at once if this is {@link #SOFT_DIRTY} and soft-dirty bits cannot be used: a kernel without them,
     * or a target not frozen for the scan. Does nothing for {@link #AUTO} and {@link #DIGEST}.
     *
     * @throws SoftDirtyUnsupportedException naming the kernel config and the option to use instead
     */
    public void requireUsable(int pid, SoftDirty.Kernel kernel, boolean frozen) {
        if (this != SOFT_DIRTY) {
            return;
        }
        Optional<String> why = unusable(kernel, frozen);
        if (why.isPresent()) {
            throw new SoftDirtyUnsupportedException("cannot use soft-dirty change detection for pid=" + pid + ": "
                    + why.get() + "; use --change-detection digest (or auto), which compares a 64-bit digest per page"
                    + (kernel.supported() ? ", or --mode pre-dump or dump" : ""));
        }
    }

    private static Optional<String> unusable(SoftDirty.Kernel kernel, boolean frozen) {
        if (!kernel.supported()) {
            return Optional.of("this kernel (" + System.getProperty("os.version") + ") has no soft-dirty bits: it was"
                    + " built without CONFIG_MEM_SOFT_DIRTY (no 'sd' in the VmFlags of /proc/self/smaps)");
        }
        if (!frozen) {
            return Optional.of("the target is not frozen for the scan (mode none): soft-dirty bits cannot be cleared"
                    + " without losing writes");
        }
        return Optional.empty();
    }

    /** Soft-dirty change detection was asked for where it cannot work. */
    public static final class SoftDirtyUnsupportedException extends PagefluxException {
        public SoftDirtyUnsupportedException(String message) {
            super(message);
        }
    }
}
