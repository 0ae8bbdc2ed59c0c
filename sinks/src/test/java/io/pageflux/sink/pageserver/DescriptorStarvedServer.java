package io.pageflux.sink.pageserver;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * A page server in a JVM of its own whose file descriptors a test can use up, for
 * {@link PageServerDescriptorLimitTest} (run it with a low {@code ulimit -n}, so that using them all up
 * is quick). Prints {@code port N}, then each session event as {@code event ...}, and obeys commands on
 * stdin, one per line:
 * <ul>
 *   <li>{@code fill}: once no session is live, opens {@code /dev/null} until the process is out of
 *       descriptors (EMFILE); prints
 *       {@code filled N};</li>
 *   <li>{@code free}: closes those; prints {@code freed N};</li>
 *   <li>{@code stop}: stops the server, prints {@code stopped}, exits 0.</li>
 * </ul>
 * The server logs (reactor's console logger) on stderr.
 */
final class DescriptorStarvedServer {

    private DescriptorStarvedServer() {
    }

    public static void main(String[] args) throws IOException, InterruptedException {
        PageServer server = PageServer.builder().directory(Path.of(args[0])).port(0).directIo(false)
                .idleTimeout(Duration.ofSeconds(20)).start();
        server.events().subscribe(e -> System.out.println("event " + e));
        System.out.println("port " + server.boundPort());
        List<FileChannel> fillers = new ArrayList<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null; ) {
            switch (line) {
                case "fill" -> {
                    // sessions that ended close their sockets just after their event: wait, or they free descriptors
                    while (server.activeSessions() > 0) {
                        Thread.sleep(10);
                    }
                    try {
                        while (true) {
                            fillers.add(FileChannel.open(Path.of("/dev/null")));
                        }
                    } catch (IOException e) {
                        if (!String.valueOf(e.getMessage()).contains("Too many open files")) {
                            throw e;
                        }
                    }
                    System.out.println("filled " + fillers.size());
                }
                case "free" -> {
                    for (FileChannel c : fillers) {
                        c.close();
                    }
                    System.out.println("freed " + fillers.size());
                    fillers.clear();
                }
                case "stop" -> {
                    server.stop();
                    System.out.println("stopped");
                    System.exit(0);
                }
                default -> System.out.println("unknown command " + line);
            }
        }
        server.stop(); // the test went away
    }
}
