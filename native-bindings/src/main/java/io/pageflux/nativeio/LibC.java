package io.pageflux.nativeio;

import jnr.ffi.Pointer;
import jnr.ffi.annotations.IgnoreError;
import jnr.ffi.annotations.SaveError;
import jnr.ffi.types.off_t;
import jnr.ffi.types.pid_t;
import jnr.ffi.types.size_t;
import jnr.ffi.types.ssize_t;

/**
 * The few libc calls pageflux needs, bound with jnr-ffi. Calls whose errno matters are
 * {@link SaveError}; errno is read with {@link Native#lastErrno()} right after a failed call, on the
 * same thread.
 *
 * <p>Public only because jnr-ffi generates its implementation in its own class loader, which
 * cannot implement a package-private interface ({@code IllegalAccessError} when {@link Native}
 * loads). Not API: use the wrapper classes of this package; only they are documented.
 */
public interface LibC {

    /** {@code process_vm_readv(2)}: {@code localIov} and {@code remoteIov} are native iovec arrays. */
    @SaveError
    @ssize_t long process_vm_readv(@pid_t int pid, Pointer localIov, @size_t long localCount,
                                   Pointer remoteIov, @size_t long remoteCount, long flags);

    /** {@code ioctl(2)} with a pointer argument (PAGEMAP_SCAN). */
    @SaveError
    int ioctl(int fd, long request, Pointer arg);

    @SaveError
    int open(String path, int flags);

    @IgnoreError
    int close(int fd);

    /** {@code pread(2)} into native memory ({@code /proc/PID/mem}, {@code /proc/PID/pagemap}). */
    @SaveError
    @ssize_t long pread(int fd, Pointer buf, @size_t long count, long offset);

    /** {@code kill(2)}; signal 0 probes whether a pid exists and may be signalled. */
    @SaveError
    int kill(@pid_t int pid, int signal);

    /** {@code ptrace(2)}; addr and data are passed as raw words. */
    @SaveError
    long ptrace(long request, @pid_t int pid, long addr, long data);

    /** {@code waitpid(2)}; {@code status} points at one native int. */
    @SaveError
    int waitpid(@pid_t int pid, Pointer status, int options);

    /**
     * {@code mmap(2)}; returns a pointer at address {@code -1} on failure (MAP_FAILED). Used by
     * {@link PagemapScanner} to learn the shared zero page's PFN from a never-written page of its own.
     * Pointer-typed on purpose: with six primitive {@code long}/{@code int} arguments jnr-ffi 2.2.19 picks a
     * fast invoker that garbles the sixth argument (glibc then rejects the offset with EINVAL).
     */
    @SaveError
    Pointer mmap(Pointer address, @size_t long length, int prot, int flags, int fd, @off_t long offset);

    @IgnoreError
    int munmap(Pointer address, @size_t long length);

    /** {@code madvise(2)}; only asks for transparent huge pages, failure is harmless. */
    @IgnoreError
    int madvise(Pointer address, @size_t long length, int advice);

    /**
     * {@code splice(2)}; {@code offIn}/{@code offOut} point at one native {@code loff_t} or are null. Pointer
     * arguments on purpose (see {@link #mmap}): six primitives would take jnr-ffi's garbling fast invoker.
     */
    @SaveError
    @ssize_t long splice(int fdIn, Pointer offIn, int fdOut, Pointer offOut, @size_t long length, int flags);

    /** {@code pipe2(2)}: {@code fds} points at two native ints. */
    @SaveError
    int pipe2(Pointer fds, int flags);

    /** {@code fcntl(2)} with an int argument (F_SETPIPE_SZ, F_DUPFD_CLOEXEC). */
    @SaveError
    int fcntl(int fd, int cmd, int arg);

    /** {@code read(2)} into native memory. */
    @SaveError
    @ssize_t long read(int fd, Pointer buf, @size_t long count);

    /** {@code getsockname(2)}: {@code length} points at one native socklen_t (in: the room, out: the size). */
    @SaveError
    int getsockname(int fd, Pointer address, Pointer length);

    /** {@code getpeername(2)}, as {@link #getsockname}. */
    @SaveError
    int getpeername(int fd, Pointer address, Pointer length);
}
