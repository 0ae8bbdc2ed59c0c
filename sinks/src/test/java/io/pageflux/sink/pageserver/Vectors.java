package io.pageflux.sink.pageserver;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/** CRIU 4.2 captures copied from shared/vectors/criu-4.2-small into test resources. */
final class Vectors {

    private Vectors() {
    }

    static byte[] bytes(String dir, String file) {
        String name = "/vectors/" + dir + "/" + file;
        try (InputStream in = Vectors.class.getResourceAsStream(name)) {
            if (in == null) {
                throw new IllegalStateException("test resource missing: " + name);
            }
            return in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Copies the named files of a vector directory into {@code target} (created). */
    static Path copy(String dir, Path target, String... files) throws IOException {
        Files.createDirectories(target);
        for (String f : files) {
            try (InputStream in = Vectors.class.getResourceAsStream("/vectors/" + dir + "/" + f)) {
                Files.copy(in, target.resolve(f), StandardCopyOption.REPLACE_EXISTING);
            }
        }
        return target;
    }
}
