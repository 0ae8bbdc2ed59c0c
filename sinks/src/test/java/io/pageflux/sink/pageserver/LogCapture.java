package io.pageflux.sink.pageserver;

import java.util.Arrays;
import java.util.List;
import reactor.core.Disposable;
import reactor.test.util.LoggerUtils;
import reactor.test.util.TestLogger;

/**
 * Records what reactor loggers created while it is open log (and still lets them log as before):
 * open it before starting the server whose messages a test checks.
 */
final class LogCapture implements AutoCloseable {

    private final Disposable factory = LoggerUtils.useCurrentLoggersWithCapture();
    private final TestLogger logger = new TestLogger(false);

    LogCapture() {
        LoggerUtils.enableCaptureWith(logger, true);
    }

    /** The lines logged so far that contain {@code text}, e.g. {@code [ WARN] page server refused ...}. */
    List<String> containing(String text) {
        return Arrays.stream((logger.getOutContent() + logger.getErrContent()).split("\n"))
                .filter(line -> line.contains(text)).toList();
    }

    @Override
    public void close() {
        LoggerUtils.disableCapture();
        factory.dispose();
    }
}
