package io.pageflux.pipeline.incremental;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.pageserver.PageServer;
import io.pageflux.sink.pageserver.PageServerSinks;
import io.pageflux.sink.pageserver.SessionEvent;
import io.pageflux.source.ProcessGoneException;
import io.pageflux.source.freeze.FreezeMode;
import io.pageflux.source.freeze.Freezer;
import io.pageflux.source.freeze.FrozenProcess;
import io.pageflux.source.freeze.KernelWrittenArea;
import io.pageflux.source.sample.SampleProcess;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.publisher.Mono;

class MigrationTest {

    @TempDir
    Path tmp;

    @Test
    void preDumpsUntilTheChangesAreSmallThenAFrozenFinalDumpThatVerifies() throws Exception {
        try (SampleProcess target = SampleProcess.start(16, true)) {
            int pid = target.pid();
            List<String> lines = new ArrayList<>();
            List<Migration.Iteration> its = Migration.of(pid).toDirectory(tmp, false).verify(true)
                    .onIteration(it -> lines.add(it.line())).run();
            assertEquals(its.size(), lines.size());
            assertTrue(its.size() >= 2, lines.toString());
            Migration.Iteration first = its.get(0);
            Migration.Iteration last = its.get(its.size() - 1);
            assertTrue(first.report().pagesSent() >= target.bulkPages(), "the first pre-dump sends everything");
            assertEquals(0, first.report().pagesUnchanged());
            // the writer rewrites every 64th page of X: later iterations send far less
            Migration.Iteration lastPre = its.get(its.size() - 2);
            assertTrue(lastPre.report().pagesSent() < first.report().pagesSent() / 4, lines.toString());
            assertNotNull(lastPre.stopReason());
            for (Migration.Iteration it : its.subList(0, its.size() - 1)) {
                assertFalse(it.finalDump());
                assertEquals(FreezeMode.PRE_DUMP, it.report().freezes().get(0).mode());
                assertTrue(it.line().startsWith("pre-dump " + it.number() + ": pages sent " + it.report().pagesSent()
                        + ", unchanged " + it.report().pagesUnchanged() + ", frozen "), it.line());
            }
            assertTrue(last.finalDump());
            assertEquals(FreezeMode.DUMP, last.report().freezes().get(0).mode());
            assertTrue(last.report().verify().orElseThrow().ok(), last.report().verify().get().text());
            assertEquals(its.size(), last.report().verify().get().chainDepth());
            assertTrue(last.report().pagesUnchanged() > 0);
            // the directory layout: pre-1 <- pre-2 <- ... <- dump
            assertEquals("dir:" + tmp.resolve("dump"), last.destination());
            assertEquals(Path.of("../pre-" + lastPre.number()), ImageDirectory.open(tmp.resolve("dump")).parentLink()
                    .orElseThrow());
            assertTrue(ImageDirectory.open(tmp.resolve("pre-1")).parentLink().isEmpty());
            // and the target runs on
            assertFalse(Files.readString(Path.of("/proc/" + pid + "/stat")).split(" ")[2].equals("t"));
            assertTrue(target.isAlive());
        }
    }

    @Test
    void aTargetThatExitsBetweenIterationsStopsTheMigrationWithWhatIsComplete() throws Exception {
        try (SampleProcess target = SampleProcess.start(2, true)) {
            int pid = target.pid();
            MigrationException e = assertThrows(MigrationException.class, () -> Migration.of(pid)
                    .toDirectory(tmp, false).thresholdPages(0)
                    .onIteration(it -> target.kill()).run());
            assertInstanceOf(ProcessGoneException.class, e.getCause());
            assertTrue(e.getMessage().startsWith("pid=" + pid + " exited after iteration 1, during iteration 2: "),
                    e.getMessage());
            assertTrue(e.getMessage().endsWith("; iterations 1..1 are complete (dir:" + tmp.resolve("pre-1")
                    + ") but there is no final dump"), e.getMessage());
            assertTrue(Files.isDirectory(tmp.resolve("pre-1")));
            try (Stream<Path> s = Files.list(tmp)) {
                assertEquals(List.of(tmp.resolve("pre-1")), s.toList(), "nothing half-written");
            }
        }
    }

    @Test
    void aPreDumpOverThePageServerSendsHolesThatTheServerResolvesAgainstItsParent() throws Exception {
        try (SampleProcess target = SampleProcess.start(4, false)) {
            int pid = target.pid();
            Path d1 = tmp.resolve("d1");
            IncrementalDump.of(pid).to(io.pageflux.sink.PageSinks.criuImages(d1)).digestsDir(d1).run().block();
            long rewritten = target.rewrite();
            Path received = Files.createDirectory(tmp.resolve("received"));
            try (PageServer server = PageServer.builder().directory(received).port(0).parentImages(d1).start()) {
                // the session directory appears once the client hung up: wait for the server to say so
                Mono<SessionEvent.Completed> completed = server.events().ofType(SessionEvent.Completed.class).next()
                        .cache();
                completed.subscribe();
                IncrementalReport r = IncrementalDump.of(pid).parent(ParentDump.open(d1, pid))
                        .to(PageServerSinks.connect("127.0.0.1", server.boundPort()).askParent(true)).run().block();
                assertTrue(r.pagesUnchanged() >= 3 * rewritten, r.line());
                Path session = completed.block(Duration.ofSeconds(30)).directory().orElseThrow();
                assertEquals(received, session.getParent());
                ImageDirectory images = ImageDirectory.open(session);
                assertEquals(r.pagesSent(), images.presentPages());
                assertEquals(r.pagesUnchanged(), images.parentPages());
                VerifyReport v = Verifier.verify(session, pid, Freezer.ptrace(pid));
                assertTrue(v.ok(), v.text());
                assertEquals(r.pagesUnchanged(), v.pagesFromParents());
            }
        }
    }

    /**
     * {@code migrate --to tcp://} into a chaining page server: every session after the first is linked to
     * the one before, and the final session's chain equals the frozen target, checked before it is thawed
     * (the freezer below verifies on thaw of the final dump), while the target keeps writing meanwhile.
     */
    @Test
    void aMigrationOverThePageServerBuildsAChainThatEqualsTheFrozenTarget() throws Exception {
        try (SampleProcess target = SampleProcess.start(16, true)) {
            int pid = target.pid();
            Path received = Files.createDirectory(tmp.resolve("received"));
            try (PageServer server = PageServer.builder().directory(received).port(0).chain(true).start()) {
                List<SessionEvent.Completed> sessions = new CopyOnWriteArrayList<>();
                server.events().ofType(SessionEvent.Completed.class).subscribe(sessions::add);
                VerifyingFreezer freezer = new VerifyingFreezer(Freezer.ptrace(pid), pid, sessions);
                String uri = "tcp://127.0.0.1:" + server.boundPort();
                List<Migration.Iteration> its = Migration.of(pid).freezer(freezer)
                        .toSinks(n -> PageServerSinks.connect(uri).askParent(n > 1), uri)
                        .onIteration(it -> freezer.verifyOnThaw = it.stopReason() != null)
                        .run();
                assertTrue(its.size() >= 2, its.toString());
                Migration.Iteration last = its.get(its.size() - 1);
                assertTrue(last.finalDump());
                assertEquals(uri, last.destination());

                VerifyReport v = freezer.report;
                assertNotNull(v, "verified while the final dump held the target frozen");
                assertTrue(v.ok(), v.text());
                assertEquals(its.size(), v.chainDepth(), "the chain spans every iteration");
                assertTrue(v.pagesFromParents() > 0, v.text());

                // one session per iteration, each (but the first) linked to the one before, relative
                assertEquals(its.size(), sessions.size());
                for (int i = 0; i < sessions.size(); i++) {
                    Path dir = sessions.get(i).directory().orElseThrow();
                    ImageDirectory images = ImageDirectory.open(dir).verify();
                    Migration.Iteration it = its.get(i);
                    assertEquals(it.report().pagesSent(), images.presentPages(), it.line());
                    assertEquals(it.report().pagesUnchanged(), images.parentPages(), it.line());
                    if (i == 0) {
                        assertTrue(images.parentLink().isEmpty());
                    } else {
                        Path previous = sessions.get(i - 1).directory().orElseThrow();
                        assertEquals(Path.of("..", previous.getFileName().toString()), images.parentLink().orElseThrow());
                    }
                }
                assertTrue(target.isAlive());
            }
        }
    }

    /** Delegates to a real freezer; when armed, compares the newest session's chain with the target before thawing. */
    private static final class VerifyingFreezer implements Freezer {
        private final Freezer delegate;
        private final int pid;
        private final List<SessionEvent.Completed> sessions;
        volatile boolean verifyOnThaw;
        volatile VerifyReport report;

        VerifyingFreezer(Freezer delegate, int pid, List<SessionEvent.Completed> sessions) {
            this.delegate = delegate;
            this.pid = pid;
            this.sessions = sessions;
        }

        @Override
        public FrozenProcess freeze() {
            FrozenProcess frozen = delegate.freeze();
            if (!verifyOnThaw) {
                return frozen;
            }
            int expected = sessions.size() + 1;
            return new FrozenProcess() {
                @Override
                public int pid() {
                    return frozen.pid();
                }

                @Override
                public List<Integer> threads() {
                    return frozen.threads();
                }

                @Override
                public List<KernelWrittenArea> kernelWritten() {
                    return frozen.kernelWritten();
                }

                @Override
                public Duration freezeLatency() {
                    return frozen.freezeLatency();
                }

                @Override
                public Duration frozenTime() {
                    return frozen.frozenTime();
                }

                @Override
                public boolean isFrozen() {
                    return frozen.isFrozen();
                }

                @Override
                public Duration thaw() {
                    try {
                        // the server publishes the session once the client hung up after CLOSE
                        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
                        while (sessions.size() < expected && System.nanoTime() < deadline) {
                            Thread.sleep(5);
                        }
                        if (sessions.size() >= expected && report == null) {
                            Path dir = sessions.get(expected - 1).directory().orElseThrow();
                            report = Verifier.verifyStill(dir, pid, frozen.kernelWritten());
                        }
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    } finally {
                        verifyOnThaw = false;
                    }
                    return frozen.thaw();
                }
            };
        }

        @Override
        public void prepare() {
            delegate.prepare();
        }

        @Override
        public String describe() {
            return delegate.describe();
        }
    }
}
