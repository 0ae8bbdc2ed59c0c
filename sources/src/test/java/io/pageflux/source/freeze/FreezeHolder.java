package io.pageflux.source.freeze;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/**
 * A separate pageflux process for the tests: freezes {@code args[0]} with {@link ThreadFreezer} (or, for
 * {@code cgroup:DIR}, that cgroup with {@link CgroupFreezer}), prints
 * {@code frozen pid=<own pid> threads=<tids>} and holds the freeze until its stdin ends, then thaws and
 * prints {@code thawed}. Tests kill it with SIGKILL mid-freeze (the kernel must let the target go) or
 * use it as "another tracer" that is already attached.
 */
public final class FreezeHolder {

    private FreezeHolder() {
    }

    /** The command that runs this class in a new JVM with the test class path. */
    static List<String> command(int targetPid) {
        return List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
                System.getProperty("java.class.path"), FreezeHolder.class.getName(), Integer.toString(targetPid));
    }

    /** The command that freezes cgroup {@code dir} in a new JVM. */
    static List<String> cgroupCommand(Path dir) {
        return List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp",
                System.getProperty("java.class.path"), FreezeHolder.class.getName(), "cgroup:" + dir);
    }

    public static void main(String[] args) throws IOException {
        Freezer freezer = args[0].startsWith("cgroup:") ? Freezer.cgroup(Path.of(args[0].substring(7)))
                : Freezer.ptrace(Integer.parseInt(args[0]));
        try (FrozenProcess frozen = freezer.freeze()) {
            System.out.println("frozen pid=" + ProcessHandle.current().pid() + " threads=" + frozen.threads());
            System.out.flush();
            while (System.in.read() >= 0) {
                // hold the freeze until our stdin closes (or we are killed)
            }
        }
        System.out.println("thawed");
        System.out.flush();
    }
}
