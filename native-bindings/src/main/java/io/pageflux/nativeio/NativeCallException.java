package io.pageflux.nativeio;

/**
 * A libc call failed. Carries the call's name, errno and the facts of the call as
 * {@code key=value} pairs, so the layers above can turn it into a domain exception
 * (process gone, permission denied, ...) without parsing messages.
 */
public class NativeCallException extends RuntimeException {

    private final String call;
    private final int errno;

    public NativeCallException(String call, int errno, String facts) {
        super(call + " failed: errno=" + Errno.of(errno).name().replace("UNKNOWN", String.valueOf(errno))
                + (facts.isEmpty() ? "" : " " + facts));
        this.call = call;
        this.errno = errno;
    }

    public String call() {
        return call;
    }

    public int errnoValue() {
        return errno;
    }

    public Errno errno() {
        return Errno.of(errno);
    }
}
