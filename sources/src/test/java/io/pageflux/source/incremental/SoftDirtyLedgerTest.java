package io.pageflux.source.incremental;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.sample.SampleProcess;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.List;
import java.util.OptionalLong;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Root and the process's owner keep their ledgers in different places; the newest record must win. */
class SoftDirtyLedgerTest {

    /** Clears nothing: only the ledger's own bookkeeping is under test here. */
    private static final SoftDirty.Kernel NO_KERNEL = new SoftDirty.Kernel() {
        @Override
        public boolean supported() {
            return true;
        }

        @Override
        public SoftDirty.Entries open(int pid) {
            throw new UnsupportedOperationException("not used");
        }

        @Override
        public void clear(int pid) {
        }
    };

    /** Sets the modification time of the one record in {@code dir} (kernel timestamps are coarse: be explicit). */
    private static void recordAt(Path dir, long seconds) throws IOException {
        try (Stream<Path> files = Files.list(dir)) {
            Path record = files.filter(f -> f.getFileName().toString().startsWith("soft-dirty-")).findFirst()
                    .orElseThrow();
            Files.setLastModifiedTime(record, FileTime.fromMillis(seconds * 1000));
        }
    }

    @Test
    void theRecordWrittenLastInAnyPlaceIsTheOneBelieved(@TempDir Path dir) throws Exception {
        try (SampleProcess target = SampleProcess.start()) {
            int pid = target.pid();
            Path run = dir.resolve("run");
            Path user = dir.resolve("user");
            SoftDirtyLedger asRoot = new SoftDirtyLedger(run, false, List.of(user));
            SoftDirtyLedger asOwner = new SoftDirtyLedger(user, false, List.of(run));

            asOwner.completed(pid, 100);
            recordAt(user, 1_000);
            assertEquals(OptionalLong.of(100), asRoot.lastClear(pid), "root sees the owner's completed dump");

            asRoot.tracking(NO_KERNEL).clear(pid); // root's dump clears the bits, then fails
            recordAt(run, 2_000);
            assertEquals(OptionalLong.empty(), asOwner.lastClear(pid),
                    "root cleared after the owner's dump: the owner's parent is not the last clear");

            asRoot.completed(pid, 200);
            recordAt(run, 2_000);
            assertEquals(OptionalLong.of(200), asOwner.lastClear(pid));
            assertEquals(OptionalLong.of(200), asRoot.lastClear(pid));

            asOwner.completed(pid, 300);
            recordAt(user, 2_000);
            assertEquals(OptionalLong.empty(), asRoot.lastClear(pid), "equally new and disagreeing: unknown");

            asRoot.completed(pid, 300);
            recordAt(run, 2_000);
            assertEquals(OptionalLong.of(300), asRoot.lastClear(pid), "equally new and agreeing");

            asOwner.completed(pid, 400);
            recordAt(user, 3_000);
            assertEquals(OptionalLong.of(400), asRoot.lastClear(pid));
            assertEquals(OptionalLong.of(400), SoftDirtyLedger.at(user).lastClear(pid));
            assertEquals(OptionalLong.of(300), SoftDirtyLedger.at(run).lastClear(pid), "at(dir) reads dir only");
        }
    }

    @Test
    void theSystemLedgerReadsRootsPlaceAndTheTempDirOfTheProcesssOwner() throws Exception {
        try (SampleProcess target = SampleProcess.start()) {
            String owner = Files.getOwner(Path.of("/proc/" + target.pid())).getName();
            SoftDirtyLedger system = SoftDirtyLedger.system();
            List<Path> places = system.placesToRead(target.pid());
            Path ownersDir = Path.of(System.getProperty("java.io.tmpdir"), "pageflux-" + owner);
            assertEquals(system.dir(), places.get(0), "its own place first");
            assertTrue(places.contains(Path.of("/run/pageflux")), places.toString());
            assertTrue(places.contains(ownersDir), places.toString());
            if (Files.isWritable(Path.of("/run"))) {
                assertEquals(Path.of("/run/pageflux"), system.dir());
            } else {
                assertEquals(Path.of(System.getProperty("java.io.tmpdir"), "pageflux-" + System.getProperty("user.name")),
                        system.dir());
            }
        }
    }
}
