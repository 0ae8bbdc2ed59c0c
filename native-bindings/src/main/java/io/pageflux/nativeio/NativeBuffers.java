package io.pageflux.nativeio;

import java.nio.ByteBuffer;

/** Native addresses of direct {@link ByteBuffer}s, without exposing jnr types. */
public final class NativeBuffers {

    private NativeBuffers() {
    }

    /**
     * The native address of a direct buffer's first byte: index 0, whatever its position.
     * Compute it once per buffer and add positions yourself. (jnr's own {@code Pointer.wrap(buffer)}
     * starts at the buffer's position; a duplicate at position 0 is wrapped so that a caller adding
     * {@code position()} does not count it twice.)
     *
     * @throws IllegalArgumentException for a heap buffer, which has no stable address
     */
    public static long address(ByteBuffer buffer) {
        if (!buffer.isDirect()) {
            throw new IllegalArgumentException("a heap ByteBuffer has no native address: use ByteBuffer.allocateDirect");
        }
        return jnr.ffi.Pointer.wrap(Native.RUNTIME, buffer.duplicate().position(0)).address();
    }
}
