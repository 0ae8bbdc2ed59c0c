package io.pageflux.source;

import io.pageflux.nativeio.NativeCallException;
import io.pageflux.nativeio.ProcMem;
import java.util.List;
import java.util.Objects;
import reactor.core.publisher.Flux;

/**
 * A running process whose memory is read in place, without stopping it and without injecting
 * anything: regions from {@code /proc/PID/smaps}, pages from {@code PAGEMAP_SCAN} (or
 * {@code /proc/PID/pagemap}), bytes with {@code process_vm_readv(2)} ({@code /proc/PID/mem} for
 * regions the policy reads that way, e.g. PROT_NONE ones).
 *
 * <pre>{@code
 * try (BufferPool pool = BufferPool.create(DataSize.ofMebibytes(64), DataSize.ofMebibytes(4))) {
 *     LiveProcess.attach(pid).pages(ReadOptions.of(pool))
 *             .concatMap(chunk -> write(chunk).doFinally(s -> chunk.release()), 1)
 *             .blockLast();
 * } // closing the pool unmaps its buffers now instead of at some GC
 * }</pre>
 *
 * Immutable and thread-safe; {@link #withScanner(ScannerKind)} returns a modified copy. The
 * target keeps running while it is read, so a dump is a consistent picture of each page, not of
 * the whole process (freeze the target yourself if you need that).
 */
public final class LiveProcess implements MemorySource {

    private final int pid;
    private final ScannerKind scanner;

    private LiveProcess(int pid, ScannerKind scanner) {
        this.pid = pid;
        this.scanner = scanner;
    }

    /**
     * Checks that {@code pid} can be dumped and returns a handle on it: the process exists and has
     * not exited, is not a kernel thread, and this process may read its memory (the same ptrace
     * check that {@code process_vm_readv} makes).
     *
     * @throws ProcessGoneException       no such process, or it has exited (zombie)
     * @throws PermissionDeniedException  no ptrace access; the message says which capability or
     *                                    setting is missing
     * @throws PagefluxException          a kernel thread (it has no user memory)
     * @throws IllegalArgumentException   {@code pid <= 0}
     */
    public static LiveProcess attach(int pid) {
        if (pid <= 0) {
            throw new IllegalArgumentException("pid must be positive: pid=" + pid);
        }
        ProcStat stat = ProcStat.read(pid);
        if (stat == null) {
            throw new ProcessGoneException(pid, "reason=no-such-process file=/proc/" + pid
                    + "/stat is absent: check the pid (ps -p " + pid + ")");
        }
        if (stat.exited()) {
            throw new ProcessGoneException(pid, "comm=" + stat.comm() + " state=" + stat.state()
                    + ": the process has exited (a zombie waiting for its parent) and has no memory left");
        }
        if (stat.kernelThread()) {
            throw new PagefluxException(String.format("cannot dump a kernel thread: pid=%d comm=%s flags=0x%x "
                    + "(PF_KTHREAD): kernel threads have no user address space; pick a user process", pid,
                    stat.comm(), stat.flags()));
        }
        // opening /proc/PID/mem makes the same PTRACE_MODE_ATTACH check process_vm_readv does
        try (ProcMem probe = ProcMem.open(pid)) {
            Objects.requireNonNull(probe);
        } catch (NativeCallException e) {
            throw LiveErrors.translate(pid, "while attaching file=/proc/" + pid + "/mem", -1, e);
        }
        return new LiveProcess(pid, ScannerKind.AUTO);
    }

    /** A copy that finds present pages with {@code kind} (default {@link ScannerKind#AUTO}). */
    public LiveProcess withScanner(ScannerKind kind) {
        return new LiveProcess(pid, Objects.requireNonNull(kind, "kind"));
    }

    public ScannerKind scanner() {
        return scanner;
    }

    @Override
    public int pid() {
        return pid;
    }

    /**
     * The address space as it is now ({@code /proc/PID/smaps}), ascending.
     *
     * @throws ProcessGoneException if the process has exited meanwhile
     */
    @Override
    public List<MemoryRegion> regions() {
        return Smaps.read(pid);
    }

    /**
     * The pages {@code options.policy()} selects, read while the target runs.
     *
     * <p><b>Backpressure.</b> Nothing happens on subscribe alone. A chunk is read, on one worker of
     * {@code options.scheduler()}, only when downstream has requested one <i>and</i>
     * {@code options.pool()} has a free buffer; there is no read-ahead, so at most
     * {@code pool.capacity()} chunks exist at once, whatever the consumer does.
     *
     * <p><b>Ownership.</b> Each emitted {@link PageChunk} belongs to the subscriber, which must
     * {@link PageChunk#release()} it (also on error and cancel). Chunks dropped by operators are
     * released by the stream's {@code doOnDiscard}; on cancel or error the buffer being filled
     * returns to the pool and the reader's file descriptors are closed.
     *
     * <p><b>Snapshot.</b> Each subscription reads the regions once, when it starts reading (on the
     * read scheduler, at the first demand), and scans pages lazily region by region from that list;
     * resubscribing reads a fresh list. When {@link ReadOptions#regions()} is set, that list is
     * scanned instead (the caller has just read it; every subscription then uses the same list). Pages that vanish during the read are skipped and counted in
     * {@code options.stats()} ({@link DumpStats#pagesVanished()}); the target exiting fails the
     * stream with {@link ProcessGoneException}.
     */
    @Override
    public Flux<PageChunk> pages(ReadOptions options) {
        Objects.requireNonNull(options, "options");
        return ChunkStream.from(() -> openReader(options), options.pool(), options.scheduler());
    }

    private LiveChunkReader openReader(ReadOptions options) {
        // the caller's fresh snapshot, if it passed one, spares a second walk of the page tables by smaps
        List<MemoryRegion> regions = options.regions() != null ? options.regions() : regions();
        PageScan scan = PageScan.open(pid, regions, options.policy(), scanner, options.stats(),
                options.countPlanned());
        try {
            return LiveChunkReader.of(scan, pid, options);
        } catch (RuntimeException | Error e) {
            scan.close();
            throw e;
        }
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof LiveProcess other && other.pid == pid && other.scanner == scanner;
    }

    @Override
    public int hashCode() {
        return pid * 31 + scanner.hashCode();
    }

    @Override
    public String toString() {
        return "LiveProcess[pid=" + pid + " scanner=" + scanner + "]";
    }
}
