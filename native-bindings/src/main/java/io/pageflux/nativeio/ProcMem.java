package io.pageflux.nativeio;

/**
 * An open {@code /proc/PID/mem}: reads the target's memory with {@code pread(2)} at the target's
 * addresses, <i>ignoring page protection</i> (PROT_NONE regions read fine), which
 * {@code process_vm_readv} cannot do.
 *
 * <p>The kernel checks ptrace access when the file is opened and pins the target's address space
 * (not the task) to the descriptor. A read that starts on an unmapped page fails with {@code EIO};
 * a read that hits one later returns the bytes before it (short read). Once the target has exited,
 * reads return 0. Not thread-safe; close it to free the descriptor.
 */
public final class ProcMem implements AutoCloseable {

    private static final int O_RDONLY = 0;
    private static final int O_CLOEXEC = 0x80000;

    private final int pid;
    private final String path;
    private int fd;

    private ProcMem(int pid, String path, int fd) {
        this.pid = pid;
        this.path = path;
        this.fd = fd;
    }

    /**
     * @throws NativeCallException {@code ENOENT}/{@code ESRCH}: no such process; {@code EACCES}/{@code EPERM}:
     *                             ptrace access denied
     */
    public static ProcMem open(int pid) {
        if (pid <= 0) {
            throw new IllegalArgumentException("pid must be positive: pid=" + pid);
        }
        String path = "/proc/" + pid + "/mem";
        int fd = Native.LIBC.open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            int errno = Native.lastErrno();
            throw new NativeCallException("open", errno, "pid=" + pid + " file=" + path);
        }
        return new ProcMem(pid, path, fd);
    }

    public int pid() {
        return pid;
    }

    /**
     * Reads up to {@code length} bytes of the target at {@code remoteAddress} into native memory at
     * {@code localAddress}.
     *
     * @return bytes read; fewer than asked on a short read, 0 when the target's memory is gone
     * @throws NativeCallException with errno ({@code EIO}: the first page is not mapped)
     */
    public long read(long localAddress, long length, long remoteAddress) {
        if (fd < 0) {
            throw new IllegalStateException("closed: file=" + path);
        }
        long n = Native.LIBC.pread(fd, Native.pointer(localAddress, length), length, remoteAddress);
        if (n < 0) {
            int errno = Native.lastErrno();
            throw new NativeCallException("pread", errno, String.format("pid=%d file=%s address=0x%x length=%d",
                    pid, path, remoteAddress, length));
        }
        return n;
    }

    @Override
    public void close() {
        if (fd >= 0) {
            Native.LIBC.close(fd);
            fd = -1;
        }
    }
}
