package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.pageflux.nativeio.Errno;
import io.pageflux.nativeio.NativeBuffers;
import io.pageflux.nativeio.NativeCallException;
import io.pageflux.nativeio.ProcMem;
import io.pageflux.nativeio.ProcessVm;
import io.pageflux.nativeio.RemoteIovecs;
import io.pageflux.source.sample.SampleProcess;
import io.pageflux.source.sample.SampleProcess.Region;
import java.nio.ByteBuffer;
import org.junit.jupiter.api.Test;

/**
 * The native wrappers ({@link ProcessVm}, {@link ProcMem}, {@link RemoteIovecs}) against a real
 * process, including the kernel behaviours {@link LiveChunkReader} relies on: short reads that stop
 * inside an iovec, EFAULT only when the first page fails, EIO / 0 bytes from /proc/PID/mem.
 */
class ProcessVmTest {

    private static final int PAGE = PageRun.PAGE_SIZE;

    private final ByteBuffer buffer = ByteBuffer.allocateDirect(16 * PAGE);
    private final long local = NativeBuffers.address(buffer);

    private byte[] page(int index) {
        byte[] out = new byte[PAGE];
        buffer.get(index * PAGE, out);
        return out;
    }

    @Test
    void iovecLayoutIsSixteenBytesPerEntryWithBaseThenLength() {
        assertEquals(0, RemoteIovecs.BASE_OFFSET);
        assertEquals(8, RemoteIovecs.LENGTH_OFFSET);
        assertEquals(16, RemoteIovecs.ENTRY_SIZE);
        RemoteIovecs iovecs = new RemoteIovecs(3);
        iovecs.set(0, 0x7f00_0000_1000L, 4096);
        iovecs.set(2, 0x7f00_0000_9000L, 3 * 4096);
        assertEquals(0x7f00_0000_1000L, iovecs.base(0));
        assertEquals(4096, iovecs.length(0));
        assertEquals(0, iovecs.base(1), "a fresh block is zeroed");
        assertEquals(4 * 4096, iovecs.totalLength(0, 3));
        assertThrows(IndexOutOfBoundsException.class, () -> iovecs.set(3, 0, 0));
        assertThrows(IndexOutOfBoundsException.class, () -> iovecs.totalLength(2, 2));
        assertThrows(IllegalArgumentException.class, () -> new RemoteIovecs(0));
        assertThrows(IllegalArgumentException.class, () -> new RemoteIovecs(RemoteIovecs.MAX_ENTRIES + 1));
    }

    @Test
    void oneCallFillsTheLocalRangeInIovecOrder() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            long a = sample.address(Region.A);
            long b = sample.address(Region.B);
            RemoteIovecs iovecs = new RemoteIovecs(4);
            iovecs.set(0, 0, 0); // skipped by the window below
            iovecs.set(1, a + 5L * PAGE, 2L * PAGE);
            iovecs.set(2, b + 2L * PAGE, PAGE);
            iovecs.set(3, a, PAGE);
            long n = ProcessVm.forPid(sample.pid()).read(local, 4L * PAGE, iovecs, 1, 3);
            assertEquals(4L * PAGE, n);
            assertArrayEquals(SampleProcess.expectedPage(Region.A, 5), page(0));
            assertArrayEquals(SampleProcess.expectedPage(Region.A, 6), page(1));
            assertArrayEquals(SampleProcess.expectedPage(Region.B, 2), page(2));
            assertArrayEquals(SampleProcess.expectedPage(Region.A, 0), page(3));
        }
    }

    @Test
    void aShortReadStopsAtTheFirstUnreadablePageEvenInsideAnIovec() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            long b = sample.address(Region.B);
            assumeTrue(b + 32L * PAGE == sample.address(Region.C), "B and C are not adjacent: " + sample);
            RemoteIovecs iovecs = new RemoteIovecs(2);
            iovecs.set(0, b + 29L * PAGE, 5L * PAGE); // B29, B30, B31, then C (PROT_NONE)
            iovecs.set(1, b, PAGE);
            long n = ProcessVm.forPid(sample.pid()).read(local, 6L * PAGE, iovecs, 0, 2);
            assertEquals(3L * PAGE, n, "the kernel copies page by page and reports the pages before C");
            assertArrayEquals(SampleProcess.expectedPage(Region.B, 30), page(1));
        }
    }

    @Test
    void anUnreadableFirstPageFailsWithEfaultNamingPidAndAddress() throws Exception {
        try (SampleProcess sample = SampleProcess.start()) {
            long c = sample.address(Region.C);
            RemoteIovecs iovecs = new RemoteIovecs(2);
            iovecs.set(0, c, PAGE);
            iovecs.set(1, sample.address(Region.A), PAGE);
            NativeCallException e = assertThrows(NativeCallException.class,
                    () -> ProcessVm.forPid(sample.pid()).read(local, 2L * PAGE, iovecs, 0, 2));
            assertEquals(Errno.EFAULT, e.errno());
            assertEquals("process_vm_readv", e.call());
            assertTrue(e.getMessage().contains("pid=" + sample.pid()), e.getMessage());
            assertTrue(e.getMessage().contains(String.format("address=0x%x", c)), e.getMessage());
        }
    }

    @Test
    void aGoneProcessFailsWithEsrch() throws Exception {
        RemoteIovecs iovecs = new RemoteIovecs(1);
        int pid;
        try (SampleProcess sample = SampleProcess.start()) {
            pid = sample.pid();
            iovecs.set(0, sample.address(Region.A), PAGE);
            sample.kill();
        }
        NativeCallException e = assertThrows(NativeCallException.class,
                () -> ProcessVm.forPid(pid).read(local, PAGE, iovecs, 0, 1));
        assertEquals(Errno.ESRCH, e.errno());
    }

    @Test
    void procMemReadsProtNoneMemoryAndFailsWithEioOnUnmappedPages() throws Exception {
        try (SampleProcess sample = SampleProcess.start(); ProcMem mem = ProcMem.open(sample.pid())) {
            long c = sample.address(Region.C);
            assertEquals(16L * PAGE, mem.read(local, 16L * PAGE, c));
            for (int p = 0; p < 16; p++) {
                assertArrayEquals(SampleProcess.expectedPage(Region.C, p), page(p));
            }
            sample.unmapA();
            NativeCallException e = assertThrows(NativeCallException.class,
                    () -> mem.read(local, PAGE, sample.address(Region.A)));
            assertEquals(Errno.EIO, e.errno());
            assertTrue(e.getMessage().contains("file=/proc/" + sample.pid() + "/mem"), e.getMessage());
            // once the target is gone the open descriptor reads nothing at all
            sample.kill();
            assertEquals(0, mem.read(local, PAGE, c));
        }
    }

    @Test
    void openingProcMemOfAMissingProcessFailsWithEnoent() throws Exception {
        int pid;
        try (SampleProcess sample = SampleProcess.start()) {
            pid = sample.pid();
            sample.kill();
        }
        NativeCallException e = assertThrows(NativeCallException.class, () -> ProcMem.open(pid));
        assertEquals(Errno.ENOENT, e.errno());
        assertTrue(e.getMessage().contains("file=/proc/" + pid + "/mem"), e.getMessage());
    }
}
