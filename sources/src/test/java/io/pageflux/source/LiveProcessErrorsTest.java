package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.nativeio.NativeCallException;
import java.io.IOException;
import java.nio.file.Files;
import org.junit.jupiter.api.Test;

/**
 * How failed native calls on a live target become pageflux exceptions. (The live tests run as root,
 * so the permission path cannot be provoked for real here; the errno mapping and message are checked.)
 */
class LiveProcessErrorsTest {

    private static NativeCallException failed(String call, int errno) {
        return new NativeCallException(call, errno, "pid=4242 address=0x7f0000001000");
    }

    @Test
    void esrchMeansTheProcessIsGoneAndSaysWhere() {
        NativeCallException cause = failed("process_vm_readv", 3);
        PagefluxException e = LiveErrors.translate(4242, "while reading", 0x7f0000001000L, cause);
        assertEquals(ProcessGoneException.class, e.getClass());
        assertEquals(4242, ((ProcessGoneException) e).pid());
        assertTrue(e.getMessage().startsWith("process is gone: pid=4242 while reading address=0x7f0000001000"),
                e.getMessage());
        assertTrue(e.getMessage().contains("errno=ESRCH"), e.getMessage());
        assertSame(cause, e.getCause());
    }

    @Test
    void epermAndEaccesNameTheMissingCapabilityAndThePtraceSetting() throws IOException {
        String scope = Files.exists(LiveErrors.PTRACE_SCOPE)
                ? ProcStat.readProcFile(LiveErrors.PTRACE_SCOPE).strip() : "absent";
        for (int errno : new int[] {1, 13}) {
            PagefluxException e = LiveErrors.translate(4242, "while reading", 0x1000, failed("process_vm_readv", errno));
            assertEquals(PermissionDeniedException.class, e.getClass());
            assertEquals(4242, ((PermissionDeniedException) e).pid());
            String m = e.getMessage();
            assertTrue(m.startsWith("permission denied: pid=4242 while reading address=0x1000"), m);
            assertTrue(m.contains(errno == 1 ? "errno=EPERM" : "errno=EACCES"), m);
            assertTrue(m.contains("CAP_SYS_PTRACE"), m);
            assertTrue(m.contains("ptrace_scope=" + scope + " (/proc/sys/kernel/yama/ptrace_scope)"), m);
            assertTrue(m.matches(".*cap_sys_ptrace=(true|false|unknown).*"), m);
        }
    }

    @Test
    void thisTestProcessReportsItsRealCapability() throws IOException {
        // CapEff as the kernel shows it for this JVM; bit 19 is CAP_SYS_PTRACE
        String capEff = Files.readAllLines(java.nio.file.Path.of("/proc/self/status")).stream()
                .filter(l -> l.startsWith("CapEff:")).findFirst().orElseThrow().substring(7).trim();
        boolean expected = (Long.parseUnsignedLong(capEff, 16) & (1L << 19)) != 0;
        assertEquals(expected, LiveErrors.hasCapability(LiveErrors.CAP_SYS_PTRACE));
        assertTrue(LiveErrors.permissionAdvice().contains("cap_sys_ptrace=" + expected));
    }

    @Test
    void otherErrnosFailWithPidAddressAndErrno() {
        PagefluxException e = LiveErrors.translate(4242, "while reading", 0x2000, failed("process_vm_readv", 12));
        assertEquals(PagefluxException.class, e.getClass());
        assertTrue(e.getMessage().startsWith("cannot read target memory: pid=4242 address=0x2000 "
                + "call=process_vm_readv errno=ENOMEM"), e.getMessage());
        PagefluxException unknown = LiveErrors.translate(4242, "while reading", 0x2000, failed("pread", 99));
        assertTrue(unknown.getMessage().contains("errno=99"), unknown.getMessage());
    }

    @Test
    void noAddressWhenTheCallHadNone() {
        PagefluxException e = LiveErrors.translate(4242, "while attaching file=/proc/4242/mem", -1, failed("open", 13));
        assertFalse(e.getMessage().contains("address="), e.getMessage());
        assertTrue(e.getMessage().contains("while attaching file=/proc/4242/mem"), e.getMessage());
    }

    @Test
    void statParsingSurvivesParenthesesAndSpacesInTheCommandName() {
        ProcStat stat = ProcStat.parse(77, "77 (a) b (c) Z 1 77 77 0 -1 2129984 0 0 0 0\n");
        assertEquals("a) b (c", stat.comm());
        assertEquals('Z', stat.state());
        assertTrue(stat.exited());
        assertTrue(stat.kernelThread(), "2129984 = 0x208040 has PF_KTHREAD (0x200000)");
        assertFalse(ProcStat.parse(1, "1 (init) S 0 1 1 0 -1 4194560 0").kernelThread());
    }
}
