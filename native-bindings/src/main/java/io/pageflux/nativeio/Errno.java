package io.pageflux.nativeio;

/** The errno values pageflux reacts to by name; anything else is reported by number. */
public enum Errno {
    EPERM(1), ENOENT(2), ESRCH(3), EINTR(4), EIO(5), EBADF(9), ECHILD(10), EAGAIN(11), ENOMEM(12),
    EACCES(13), EFAULT(14), EBUSY(16), EEXIST(17), ENODEV(19), EINVAL(22), ENOSPC(28), ENOTTY(25),
    ENOSYS(38), UNKNOWN(-1);

    private final int value;

    Errno(int value) {
        this.value = value;
    }

    public int value() {
        return value;
    }

    public static Errno of(int value) {
        for (Errno e : values()) {
            if (e.value == value) {
                return e;
            }
        }
        return UNKNOWN;
    }
}
