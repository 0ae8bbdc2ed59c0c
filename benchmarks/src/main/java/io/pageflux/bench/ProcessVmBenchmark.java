package io.pageflux.bench;

import io.pageflux.nativeio.NativeBuffers;
import io.pageflux.nativeio.ProcessVm;
import io.pageflux.nativeio.RemoteIovecs;
import java.nio.ByteBuffer;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * One {@code process_vm_readv} batch, the unit of pageflux's reader, by size and iovec count, through
 * the same binding the reader uses ({@link ProcessVm} with a {@link RemoteIovecs} block, into a
 * page-aligned buffer like the pool's).
 *
 * <p>The target is this very process: {@code process_vm_readv} on one's own pid takes the same path
 * in the kernel (pin the remote pages, copy, unpin) as on another process, and the benchmark needs no
 * helper to start and clean up. The source is {@code 2 x 16 MiB} of touched anonymous memory.
 * <ul>
 *   <li>{@code iovecs=1}: one remote iovec of {@code size} bytes (a dense region);</li>
 *   <li>{@code iovecs=1024}: {@code size} cut into 1024 pieces, every other piece of a source twice as
 *       large, so no two are adjacent (many small page runs, like a sparse region). Pieces are
 *       {@code size / 1024} bytes: whole pages from 4 MiB up, sub-page below, which shows the cost per
 *       iovec.</li>
 * </ul>
 * Score: microseconds per call; throughput = size / score.
 *
 * <pre>
 *   java -jar benchmarks/target/benchmarks.jar ProcessVmBenchmark -f 1 -wi 2 -i 3
 * </pre>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(1)
public class ProcessVmBenchmark {

    private static final int PAGE = 4096;
    private static final int MAX_SIZE = 16 << 20;

    @Param({"65536", "262144", "1048576", "4194304", "16777216"})
    public int size;

    @Param({"1", "1024"})
    public int iovecs;

    private ByteBuffer source;
    private ByteBuffer destination;
    private ProcessVm vm;
    private RemoteIovecs remote;
    private long destinationAddress;

    @Setup(Level.Trial)
    public void setUp() {
        source = aligned(2 * MAX_SIZE);
        for (int i = 0; i < source.capacity(); i += 8) {
            source.putLong(i, i * 0x9E3779B97F4A7C15L); // every page touched and distinct
        }
        destination = aligned(MAX_SIZE);
        for (int i = 0; i < destination.capacity(); i += PAGE) {
            destination.put(i, (byte) 1); // faulted in, like a pool buffer after its first use
        }
        destinationAddress = NativeBuffers.address(destination);
        vm = ProcessVm.forPid((int) ProcessHandle.current().pid());
        remote = new RemoteIovecs(iovecs);
        long base = NativeBuffers.address(source);
        long piece = size / iovecs;
        for (int i = 0; i < iovecs; i++) {
            // iovecs=1: [base, base+size); iovecs=1024: every other piece of [base, base+2*size)
            remote.set(i, base + (iovecs == 1 ? 0 : 2L * i * piece), piece);
        }
    }

    /** Page aligned, as the pool's buffers are (process_vm_readv into a misaligned buffer is ~3.5x slower). */
    private static ByteBuffer aligned(int bytes) {
        return ByteBuffer.allocateDirect(bytes + PAGE).alignedSlice(PAGE).limit(bytes).slice();
    }

    @Benchmark
    public long readBatch() {
        long n = vm.read(destinationAddress, size, remote, 0, iovecs);
        if (n != size) {
            throw new IllegalStateException("short read: " + n + " of " + size + " bytes, iovecs=" + iovecs);
        }
        return n;
    }
}
