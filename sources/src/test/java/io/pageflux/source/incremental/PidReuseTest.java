package io.pageflux.source.incremental;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.sample.SampleProcess;
import java.math.BigDecimal;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

class PidReuseTest {

    private static long uptimeMicros() throws Exception {
        String text = Files.readString(Path.of("/proc/uptime")).trim();
        return new BigDecimal(text.substring(0, text.indexOf(' '))).movePointRight(6).longValueExact();
    }

    @Test
    void aProcessStartedAfterTheParentDumpIsAnotherProcess() throws Exception {
        long before = uptimeMicros();
        Thread.sleep(30); // more than one clock tick (10 ms) between "the parent dump" and the start
        try (SampleProcess target = SampleProcess.start()) {
            Thread.sleep(30);
            long after = uptimeMicros();
            PidReuse reused = PidReuse.check(target.pid(), before);
            assertTrue(reused.reused(), reused.describe());
            assertTrue(reused.describe().startsWith("pid=" + target.pid() + " start_time_us="), reused.describe());
            assertTrue(reused.describe().endsWith("(started after the parent dump: pid reused)"));
            PidReuse same = PidReuse.check(target.pid(), after);
            assertFalse(same.reused(), same.describe());
            assertTrue(same.startMicros() > before && same.startMicros() <= after,
                    "start " + same.startMicros() + " between " + before + " and " + after);
        }
    }

    @Test
    void aGoneProcessIsReported() throws Exception {
        Process p = new ProcessBuilder("true").start();
        p.waitFor();
        ProcessGoneException e = assertThrows(ProcessGoneException.class, () -> PidReuse.check((int) p.pid(), 1));
        assertEquals((int) p.pid(), e.pid());
    }
}
