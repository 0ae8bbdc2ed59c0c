package io.pageflux.pipeline.incremental;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * The outcome of {@link Verifier#verify}.
 *
 * @param dir              the directory checked (the newest of the chain)
 * @param pid              the live process
 * @param chainDepth       directories in the chain (1: no parent)
 * @param pagesCompared    pages of the image compared with live memory
 * @param pagesFromParents of which resolved through a parent (PE_PARENT holes)
 * @param bytesDiffer      pages whose bytes differ
 * @param notInMemory      pages of the image that the process no longer maps or cannot be read
 * @param notInImage       pages the process has (CRIU's pre-dump selection) that the image lacks
 * @param pagesKernelWrittenOnly pages that differed only in bytes the kernel writes itself (rseq): equal
 * @param examples         the first few problems, as {@code key=value} facts
 * @param frozen           how long the target was frozen for the check (zero if the caller froze it)
 */
public record VerifyReport(Path dir, int pid, int chainDepth, long pagesCompared, long pagesFromParents,
                           long bytesDiffer, long notInMemory, long notInImage, long pagesKernelWrittenOnly,
                           List<String> examples,
                           Duration frozen) {

    public VerifyReport {
        examples = List.copyOf(examples);
    }

    /** The image equals live memory and lacks nothing. */
    public boolean ok() {
        return bytesDiffer == 0 && notInMemory == 0 && notInImage == 0;
    }

    VerifyReport withFrozen(Duration frozen) {
        return new VerifyReport(dir, pid, chainDepth, pagesCompared, pagesFromParents, bytesDiffer, notInMemory,
                notInImage, pagesKernelWrittenOnly, examples, frozen);
    }

    /** A few lines for people. */
    public String text() {
        StringBuilder sb = new StringBuilder();
        sb.append(String.format("verify %s against pid=%d: %s%n", dir, pid, ok() ? "OK, the image equals live memory"
                : "MISMATCH"));
        sb.append(String.format("  pages compared %d (of which %d from %d parent level%s), differing %d,"
                        + " missing in memory %d, missing in image %d%n", pagesCompared, pagesFromParents,
                chainDepth - 1, chainDepth == 2 ? "" : "s", bytesDiffer, notInMemory, notInImage));
        if (pagesKernelWrittenOnly > 0) {
            sb.append(String.format("  %d page%s differed only in bytes the kernel writes itself (rseq): counted as"
                    + " equal%n", pagesKernelWrittenOnly, pagesKernelWrittenOnly == 1 ? "" : "s"));
        }
        if (!frozen.isZero()) {
            sb.append(String.format("  target frozen for %.1f ms%n", frozen.toNanos() / 1e6));
        }
        for (String e : examples) {
            sb.append("  ").append(e).append(System.lineSeparator());
        }
        return sb.toString();
    }
}
