package io.pageflux.source.testing;

/**
 * Which pages of a simulated region are present, computed from the seed block by block, never
 * stored. A region is cut into blocks of {@code blockPages} pages; block {@code b} holds one run
 * of {@code k} present pages at a pseudo-random offset, where {@code k} is {@code density * len}
 * rounded down or up at random so the expected density is exact. Two adjacent blocks whose runs
 * touch form one run, so a dense region is a single run however large it is.
 */
final class PagePresence {

    private static final long GOLDEN = 0x9E3779B97F4A7C15L;

    private final long seed;
    private final long regionStart;
    private final long pages;
    private final int blockPages;
    private final double density;

    PagePresence(long seed, long regionStart, long pages, int blockPages, double density) {
        this.seed = seed;
        this.regionStart = regionStart;
        this.pages = pages;
        this.blockPages = blockPages;
        this.density = density;
    }

    /** splitmix64's finalizer: a cheap, well-mixed 64-bit hash. */
    static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    long blocks() {
        return (pages + blockPages - 1) / blockPages;
    }

    private long blockLength(long block) {
        return Math.min(blockPages, pages - block * blockPages);
    }

    private long hash(long block) {
        return mix(seed ^ mix(regionStart + block * GOLDEN));
    }

    /** Present pages in {@code block}. */
    long count(long block) {
        long len = blockLength(block);
        double exact = density * len;
        long base = (long) Math.floor(exact);
        if (base >= len) {
            return len;
        }
        double uniform = (hash(block) >>> 11) * 0x1.0p-53;
        return base + (uniform < exact - base ? 1 : 0);
    }

    /** Page index, inside {@code block}, of its first present page (meaningful when {@code count > 0}). */
    long offset(long block, long count) {
        long len = blockLength(block);
        return count >= len ? 0 : Long.remainderUnsigned(mix(hash(block) + 1), len - count + 1);
    }

    /** Present pages in the whole region: one pass over the blocks, nothing stored. */
    long presentPages() {
        long total = 0;
        for (long b = 0, n = blocks(); b < n; b++) {
            total += count(b);
        }
        return total;
    }

    /** Maximal runs of present pages, as page indexes relative to the region's start. */
    final class Runs {
        private long block;

        /** The next run as {@code {firstPage, pageCount}}, or {@code null} after the last one. */
        long[] next() {
            long n = blocks();
            while (block < n) {
                long b = block++;
                long k = count(b);
                if (k == 0) {
                    continue;
                }
                long first = b * blockPages + offset(b, k);
                long end = first + k;
                // extend while the next block's run starts right where this one ends
                while (block < n && end == block * blockPages) {
                    long nk = count(block);
                    if (nk == 0 || offset(block, nk) != 0) {
                        break;
                    }
                    end += nk;
                    block++;
                }
                return new long[] {first, end - first};
            }
            return null;
        }
    }
}
