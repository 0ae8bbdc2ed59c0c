package io.pageflux.source.sample;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/**
 * A separate JVM for the tests: starts a {@link SampleProcess} (with two worker threads), prints
 * {@code sample pid=<pid>} and waits until its stdin ends. Tests kill it with SIGKILL to check that the
 * sample does not outlive the JVM that started it.
 */
public final class SampleHolder {

    private SampleHolder() {
    }

    static List<String> command() {
        return List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
                System.getProperty("java.class.path"), SampleHolder.class.getName());
    }

    public static void main(String[] args) throws IOException {
        try (SampleProcess sample = SampleProcess.start(SampleProcess.Options.defaults().withThreads(2))) {
            System.out.println("sample pid=" + sample.pid());
            System.out.flush();
            while (System.in.read() >= 0) {
                // hold it until our stdin closes (or we are killed)
            }
        }
    }
}
