package io.pageflux.nativeio;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;

/**
 * Loads {@link LibC} once and gives the rest of this package the runtime, errno and native
 * memory helpers. Package-private on purpose: the public classes of this package are the only
 * way in.
 */
final class Native {

    static final LibC LIBC = LibraryLoader.create(LibC.class).load("c");
    static final Runtime RUNTIME = Runtime.getRuntime(LIBC);

    private Native() {
    }

    /** errno of the last failed call on this thread; call it right after the failure. */
    static int lastErrno() {
        return RUNTIME.getLastError();
    }

    /** A pointer to {@code length} bytes of native memory starting at a raw address. */
    static Pointer pointer(long address, long length) {
        return Pointer.wrap(RUNTIME, address, length);
    }
}
