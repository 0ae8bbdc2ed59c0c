package io.pageflux.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.source.sample.SampleProcess;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** {@code pre-dump}, {@code verify} and {@code migrate} through the command line, in-process. */
class IncrementalCommandsTest {

    @TempDir
    Path tmp;

    /** Runs the CLI; the incremental commands are added here until PagefluxCli lists them. */
    static Cli.Result run(String... args) {
        CommandLine cl = PagefluxCli.commandLine(CliEnvironment.headless());
        for (Object command : List.of(new PreDumpCommand(), new MigrateCommand(), new VerifyCommand())) {
            String name = command.getClass().getAnnotation(CommandLine.Command.class).name();
            if (!cl.getSubcommands().containsKey(name)) {
                cl.addSubcommand(command);
                // converters registered before a subcommand was added do not reach it
                cl.getSubcommands().get(name).registerConverter(io.pageflux.source.DataSize.class,
                        io.pageflux.source.DataSize::parse);
            }
        }
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        int exit = cl.execute(args);
        return new Cli.Result(exit, out.toString(), err.toString());
    }

    @Test
    void preDumpThenAnIncrementalPreDumpThenVerify() throws Exception {
        try (SampleProcess target = SampleProcess.start(2, false)) {
            String pid = Integer.toString(target.pid());
            Path d1 = tmp.resolve("d1");
            Cli.Result r1 = run("pre-dump", "--pid", pid, "--out", d1.toString());
            assertEquals(0, r1.exit(), r1.toString());
            assertTrue(r1.out().contains("  frozen   "), r1.out());
            assertTrue(r1.out().contains("(ptrace:" + pid + ", 1 thread, stop latency "), r1.out());
            assertTrue(r1.out().contains(" unchanged (PE_PARENT holes), no parent\n"), r1.out());
            // this kernel has no soft-dirty bits: auto falls back to page digests and says why
            assertTrue(r1.out().contains("  method   digest: every page read and hashed (xxHash64) in "), r1.out());
            assertTrue(r1.out().contains("  because  this kernel (" + System.getProperty("os.version") + ") has no"
                    + " soft-dirty bits: it was built without CONFIG_MEM_SOFT_DIRTY"), r1.out());
            assertTrue(r1.out().contains("  digests  " + d1.resolve("pageflux-digests.bin")), r1.out());

            long rewritten = target.rewrite();
            Path d2 = tmp.resolve("d2");
            Cli.Result r2 = run("pre-dump", "--pid", pid, "--out", d2.toString(), "--parent", d1.toString(), "--json");
            assertEquals(0, r2.exit(), r2.toString());
            JsonNode json = Reports.JSON.readTree(r2.out());
            JsonNode changes = json.get("changes");
            assertEquals("digest", changes.get("method").asText());
            assertTrue(changes.get("methodReason").asText().contains("CONFIG_MEM_SOFT_DIRTY"), r2.out());
            assertEquals(0, changes.get("pagesNotRead").asLong());
            assertFalse(changes.get("softDirtyCleared").asBoolean());
            assertEquals(ImageDirectory.open(d2).presentPages(), changes.get("pagesSent").asLong());
            assertEquals(ImageDirectory.open(d2).parentPages(), changes.get("pagesUnchanged").asLong());
            assertTrue(changes.get("pagesSent").asLong() >= rewritten);
            assertEquals(d1.toString(), changes.get("parent").asText());
            assertEquals("pre-dump", json.get("freezes").get(0).get("mode").asText());
            assertTrue(json.get("frozenMillis").asDouble() > 0);

            Cli.Result ok = run("verify", d2.toString(), "--pid", pid);
            assertEquals(0, ok.exit(), ok.toString());
            assertTrue(ok.out().startsWith("verify " + d2 + " against pid=" + pid + ": OK, the image equals live memory"),
                    ok.out());
            Cli.Result stale = run("verify", d1.toString(), "--pid", pid, "--json");
            assertEquals(1, stale.exit(), stale.toString());
            JsonNode v = Reports.JSON.readTree(stale.out());
            assertFalse(v.get("ok").asBoolean());
            long onlyRseq = changes.get("pagesSent").asLong() - v.get("bytesDiffer").asLong();
            assertTrue(onlyRseq == 0 || onlyRseq == 1, "at most the page of the rseq area: " + stale.out());
        }
    }

    @Test
    void changeDetectionOptionErrors() throws Exception {
        try (SampleProcess target = SampleProcess.start(1, false)) {
            String pid = Integer.toString(target.pid());
            Path d = tmp.resolve("d");
            Cli.Result soft = run("pre-dump", "--pid", pid, "--out", d.toString(), "--change-detection", "soft-dirty");
            assertEquals(2, soft.exit(), soft.toString());
            assertTrue(soft.err().contains("--change-detection soft-dirty: cannot use soft-dirty change detection for"
                    + " pid=" + pid + ": this kernel (" + System.getProperty("os.version") + ") has no soft-dirty bits:"
                    + " it was built without CONFIG_MEM_SOFT_DIRTY"), soft.err());
            assertTrue(soft.err().contains("use --change-detection digest (or auto)"), soft.err());
            assertFalse(Files.exists(d.resolve("inventory.img")), "nothing written");

            Cli.Result migrate = run("migrate", "--pid", pid, "--out", d.toString(), "--change-detection", "soft-dirty");
            assertEquals(2, migrate.exit(), migrate.toString());
            assertTrue(migrate.err().contains("built without CONFIG_MEM_SOFT_DIRTY"), migrate.err());

            Cli.Result bad = run("pre-dump", "--pid", pid, "--out", d.toString(), "--change-detection", "bits");
            assertEquals(2, bad.exit(), bad.toString());
            assertTrue(bad.err().contains("--change-detection bits: unknown change detection 'bits': use auto,"
                    + " soft-dirty or digest"), bad.err());

            Cli.Result digest = run("pre-dump", "--pid", pid, "--out", d.toString(), "--change-detection", "digest",
                    "--json");
            assertEquals(0, digest.exit(), digest.toString());
            JsonNode changes = Reports.JSON.readTree(digest.out()).get("changes");
            assertEquals("digest", changes.get("method").asText());
            assertFalse(changes.has("methodReason"), "asked for, so no reason: " + digest.out());
            assertTrue(target.isAlive());
        }
    }

    @Test
    void aFrozenDumpVerifiesBeforeThawingAndBadInputIsRefused() throws Exception {
        try (SampleProcess target = SampleProcess.start(2, true)) {
            String pid = Integer.toString(target.pid());
            Path d = tmp.resolve("d");
            Cli.Result r = run("pre-dump", "--pid", pid, "--out", d.toString(), "--mode", "dump", "--full", "--verify");
            assertEquals(0, r.exit(), r.toString());
            assertTrue(r.out().contains(": OK, the image equals live memory"), r.out());
            assertTrue(r.out().startsWith("dumped pid=" + pid), r.out());

            Cli.Result noMode = run("pre-dump", "--pid", pid, "--out", tmp.resolve("x").toString(), "--verify");
            assertEquals(2, noMode.exit());
            assertTrue(noMode.err().startsWith("pageflux: --verify needs --mode dump"), noMode.err());

            Cli.Result missing = run("pre-dump", "--pid", pid, "--out", tmp.resolve("y").toString(), "--parent",
                    tmp.resolve("nope").toString());
            assertEquals(2, missing.exit());
            assertEquals("pageflux: parent=" + tmp.resolve("nope") + " does not exist: name the directory of an earlier"
                    + " dump of pid=" + pid + " (e.g. made by pageflux pre-dump --out)\n", missing.err());
            assertFalse(Files.exists(tmp.resolve("y")));

            Cli.Result mode = run("pre-dump", "--pid", pid, "--out", tmp.resolve("z").toString(), "--mode", "sometimes");
            assertEquals(2, mode.exit());
            assertTrue(mode.err().contains("unknown freeze mode 'sometimes'"), mode.err());
        }
    }

    @Test
    void aDebuggerAttachedIsReportedAndTheTargetLeftAsItWas() throws Exception {
        try (SampleProcess target = SampleProcess.start(0, false)) {
            String pid = Integer.toString(target.pid());
            Process holder = new ProcessBuilder(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "-cp", System.getProperty("java.class.path"), "io.pageflux.source.freeze.FreezeHolder", pid))
                    .redirectError(ProcessBuilder.Redirect.INHERIT).start();
            try {
                BufferedReader out = new BufferedReader(new InputStreamReader(holder.getInputStream(),
                        StandardCharsets.US_ASCII));
                assertTrue(out.readLine().startsWith("frozen"));
                Cli.Result r = run("pre-dump", "--pid", pid, "--out", tmp.resolve("d").toString());
                assertEquals(2, r.exit(), r.toString());
                assertTrue(r.err().startsWith("pageflux: pid=" + pid + " is already traced by pid=" + holder.pid()
                        + " (TracerPid in /proc/" + pid + "/status): detach the debugger"), r.err());
                assertFalse(Files.exists(tmp.resolve("d")));
                holder.getOutputStream().close();
                assertEquals("thawed", out.readLine());
                assertTrue(holder.waitFor(10, TimeUnit.SECONDS));
            } finally {
                holder.destroyForcibly();
            }
            assertTrue(target.isAlive());
        }
    }

    @Test
    void migratePrintsOneLinePerIterationAndVerifiesTheFinalDump() throws Exception {
        try (SampleProcess target = SampleProcess.start(8, true)) {
            String pid = Integer.toString(target.pid());
            Cli.Result r = run("migrate", "--pid", pid, "--out", tmp.toString(), "--verify");
            assertEquals(0, r.exit(), r.toString());
            String[] lines = r.out().split("\n");
            assertTrue(lines[0].startsWith("pre-dump 1: pages sent "), r.out());
            assertTrue(lines[0].contains(", unchanged 0, frozen ") && lines[0].endsWith(" -> dir:" + tmp.resolve("pre-1")),
                    lines[0]);
            int finalLine = -1;
            for (int i = 0; i < lines.length; i++) {
                if (lines[i].startsWith("final dump ")) {
                    finalLine = i;
                }
            }
            assertTrue(finalLine >= 2, r.out());
            assertTrue(lines[finalLine].endsWith(" -> dir:" + tmp.resolve("dump")), lines[finalLine]);
            assertTrue(lines[finalLine + 1].startsWith("migrated pid=" + pid + " in " + (finalLine + 1) + " iterations: "),
                    r.out());
            assertTrue(r.out().contains(": OK, the image equals live memory"), r.out());
            assertTrue(target.isAlive());
        }
    }
}
