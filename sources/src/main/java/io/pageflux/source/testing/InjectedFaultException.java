package io.pageflux.source.testing;

import io.pageflux.source.PagefluxException;

/**
 * A failure a test asked for: a simulated read error ({@link SimulatedProcess.Builder#readErrorAt(long)})
 * or a failing test sink. The message names what failed ({@code pid}, {@code address}, {@code sink})
 * like a real failure would, plus which injection caused it.
 */
public class InjectedFaultException extends PagefluxException {

    public InjectedFaultException(String message) {
        super(message);
    }
}
