package io.pageflux.nativeio;

import jnr.ffi.Pointer;

/**
 * {@code process_vm_readv(2)} for one target process: one local range (a direct buffer's native
 * address) filled from a window of {@link RemoteIovecs}, in a single system call.
 *
 * <p>The kernel copies page by page and stops at the first remote page it cannot pin, returning
 * the bytes copied so far (a <i>short read</i>, which may end in the middle of an iovec); only when
 * the very first page fails does the call fail, with {@code EFAULT}. Callers match a short count to
 * the iovec where it stopped and retry from there.
 *
 * <p>Not thread-safe (it owns the one-entry local iovec block); use one instance per reader.
 */
public final class ProcessVm {

    private final int pid;
    /** The single local {@code struct iovec}, same layout as {@link RemoteIovecs}. */
    private final NativeBlock localIov = new NativeBlock(RemoteIovecs.ENTRY_SIZE);

    private ProcessVm(int pid) {
        this.pid = pid;
    }

    public static ProcessVm forPid(int pid) {
        if (pid <= 0) {
            throw new IllegalArgumentException("pid must be positive: pid=" + pid);
        }
        return new ProcessVm(pid);
    }

    public int pid() {
        return pid;
    }

    /**
     * Copies the target ranges {@code remote[first .. first+count-1]} into {@code localLength}
     * bytes of native memory at {@code localAddress}.
     *
     * @return bytes copied: the whole request, or fewer on a short read (see the class comment)
     * @throws NativeCallException with errno ({@code EFAULT}: the first remote page is not readable;
     *                             {@code ESRCH}: no such process or it has no memory any more;
     *                             {@code EPERM}: ptrace access denied; others as the kernel says)
     */
    public long read(long localAddress, long localLength, RemoteIovecs remote, int first, int count) {
        remote.checkWindow(first, count);
        Pointer local = localIov.pointer();
        local.putLong(RemoteIovecs.BASE_OFFSET, localAddress);
        local.putLong(RemoteIovecs.LENGTH_OFFSET, localLength);
        Pointer remoteIov = Native.pointer(remote.address(first), (long) count * RemoteIovecs.ENTRY_SIZE);
        long n = Native.LIBC.process_vm_readv(pid, local, 1, remoteIov, count, 0);
        localIov.keepAlive();
        remote.keepAlive();
        if (n < 0) {
            int errno = Native.lastErrno();
            throw new NativeCallException("process_vm_readv", errno, String.format(
                    "pid=%d address=0x%x iovecs=%d local=0x%x length=%d", pid, remote.base(first), count,
                    localAddress, localLength));
        }
        return n;
    }
}
