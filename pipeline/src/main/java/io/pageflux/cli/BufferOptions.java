package io.pageflux.cli;

import io.pageflux.source.BufferPool;
import io.pageflux.source.DataSize;
import picocli.CommandLine.Option;

/**
 * {@code --budget} and {@code --chunk-size}, shared by the commands that read a process ({@code dump},
 * {@code pre-dump}, {@code migrate}) through a picocli mixin, with the check that they make a pool.
 */
final class BufferOptions {

    @Option(names = "--budget", paramLabel = "SIZE", defaultValue = "64M",
            description = "Memory for page buffers, e.g. 16M, 1G (default ${DEFAULT-VALUE}). The dump never "
                    + "holds more pages than this, whatever the target's size.")
    DataSize budget;

    @Option(names = "--chunk-size", paramLabel = "SIZE", defaultValue = "4M",
            description = "Bytes per read batch and buffer, a multiple of 4K (default ${DEFAULT-VALUE}).")
    DataSize chunkSize;

    /** Bad input (exit 2) unless the two make a pool: chunk a multiple of the page size, budget at least one chunk. */
    void check() {
        try {
            BufferPool.create(budget, chunkSize);
        } catch (IllegalArgumentException e) {
            throw CliException.badInput("--budget " + budget + " --chunk-size " + chunkSize + ": " + e.getMessage(), e);
        }
    }
}
