package io.pageflux.sink.pageserver;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Sinks;

class ReplyReaderTest {

    private static ByteBuf bytes(int... values) {
        byte[] b = new byte[values.length];
        for (int i = 0; i < values.length; i++) {
            b[i] = (byte) values[i];
        }
        return Unpooled.wrappedBuffer(b);
    }

    @Test
    void aReplyCompletesItsWaiterOutsideTheReadersLock() {
        ReplyReader reader = new ReplyReader("test:1");
        Sinks.Many<ByteBuf> inbound = Sinks.many().unicast().onBackpressureBuffer();
        reader.start(inbound.asFlux());
        AtomicBoolean lockHeld = new AtomicBoolean(true);
        var reply = reader.expect(4, "CLOSE").doOnNext(b -> lockHeld.set(Thread.holdsLock(reader))).toFuture();
        inbound.tryEmitNext(bytes(7, 0, 0, 0));
        ByteBuffer got = reply.join();
        assertEquals(7, got.getInt(0), "little-endian int reply");
        assertFalse(lockHeld.get(), "the waiter ran while the reader's lock was held");
    }

    @Test
    void aReplyThatArrivesBeforeItIsExpectedIsKept() {
        ReplyReader reader = new ReplyReader("test:1");
        Sinks.Many<ByteBuf> inbound = Sinks.many().unicast().onBackpressureBuffer();
        reader.start(inbound.asFlux());
        inbound.tryEmitNext(bytes(1));
        assertEquals(1, reader.expect(1, "PARENT").block(Duration.ofSeconds(5)).get(0));
        reader.check(); // nothing left over
    }

    @Test
    void bytesNobodyAskedForFailTheNextCheckWithTheServerNamed() {
        ReplyReader reader = new ReplyReader("host:27027");
        Sinks.Many<ByteBuf> inbound = Sinks.many().unicast().onBackpressureBuffer();
        reader.start(inbound.asFlux());
        inbound.tryEmitNext(bytes(1, 2));
        PageServerException e = assertThrows(PageServerException.class, reader::check);
        assertTrue(e.getMessage().startsWith("page server sent 2 unexpected byte(s): server=host:27027"), e.getMessage());
    }

    @Test
    void aHangUpWhileWaitingFailsTheWaiterOutsideTheLockNamingTheCommand() {
        ReplyReader reader = new ReplyReader("host:27027");
        Sinks.Many<ByteBuf> inbound = Sinks.many().unicast().onBackpressureBuffer();
        reader.start(inbound.asFlux());
        AtomicBoolean lockHeld = new AtomicBoolean(true);
        var reply = reader.expect(4, "CLOSE").doOnError(t -> lockHeld.set(Thread.holdsLock(reader))).toFuture();
        inbound.tryEmitComplete();
        Throwable e = assertThrows(Exception.class, reply::join).getCause();
        assertTrue(e instanceof PageServerException, String.valueOf(e));
        assertTrue(e.getMessage().contains("closed the connection: server=host:27027 while=waiting for the reply to CLOSE"),
                e.getMessage());
        assertFalse(lockHeld.get(), "the waiter failed while the reader's lock was held");
        reader.ended().block(Duration.ofSeconds(5));
    }

    // blocking mode (plain TCP): the session's thread waits in await() while the reader's thread feeds bytes

    @Test
    void awaitReturnsTheReplyLittleEndianAndKeepsWhatFollowsForTheNext() throws Exception {
        ReplyReader reader = new ReplyReader("host:27027");
        Sinks.Many<ByteBuf> inbound = Sinks.many().unicast().onBackpressureBuffer();
        reader.start(inbound.asFlux());
        Thread feeder = new Thread(() -> {
            sleepQuietly(50); // the waiter is parked by then (a reply that comes first is kept: next test)
            inbound.tryEmitNext(bytes(1, 0, 0));
            inbound.tryEmitNext(bytes(0));
        });
        feeder.start();
        ByteBuffer parent = reader.await(4, () -> "PARENT pagemap=pagemap-1.img", Duration.ofSeconds(5).toNanos());
        feeder.join();
        assertEquals(1, parent.getInt(0), "little-endian int reply");
        reader.check(); // nothing left over
    }

    @Test
    void aReplyThatArrivesBeforeAwaitIsKept() {
        ReplyReader reader = new ReplyReader("host:27027");
        Sinks.Many<ByteBuf> inbound = Sinks.many().unicast().onBackpressureBuffer();
        reader.start(inbound.asFlux());
        inbound.tryEmitNext(bytes(1));
        assertEquals(1, reader.await(1, () -> "OPEN2", Duration.ofSeconds(5).toNanos()).get(0));
    }

    @Test
    void awaitGivesUpAfterItsTimeoutWithNull() {
        ReplyReader reader = new ReplyReader("host:27027");
        reader.start(Sinks.many().unicast().<ByteBuf>onBackpressureBuffer().asFlux());
        assertNull(reader.await(1, () -> "OPEN2", Duration.ofMillis(100).toNanos()));
    }

    @Test
    void aHangUpWhileAwaitingFailsNamingTheCommand() {
        ReplyReader reader = new ReplyReader("host:27027");
        Sinks.Many<ByteBuf> inbound = Sinks.many().unicast().onBackpressureBuffer();
        reader.start(inbound.asFlux());
        new Thread(() -> {
            sleepQuietly(50);
            inbound.tryEmitComplete();
        }).start();
        PageServerException e = assertThrows(PageServerException.class,
                () -> reader.await(4, () -> "CLOSE", Duration.ofSeconds(5).toNanos()));
        assertTrue(e.getMessage().contains("closed the connection: server=host:27027 while=waiting for the reply to CLOSE"),
                e.getMessage());
        reader.awaitEnd(Duration.ofSeconds(5).toNanos()); // returns at once: the server has closed
    }

    @Test
    void tooManyBytesForTheAwaitedReplyFailIt() {
        ReplyReader reader = new ReplyReader("host:27027");
        Sinks.Many<ByteBuf> inbound = Sinks.many().unicast().onBackpressureBuffer();
        reader.start(inbound.asFlux());
        new Thread(() -> {
            sleepQuietly(50);
            inbound.tryEmitNext(bytes(0, 0));
        }).start();
        PageServerException e = assertThrows(PageServerException.class,
                () -> reader.await(1, () -> "OPEN2 pagemap=pagemap-7.img", Duration.ofSeconds(5).toNanos()));
        assertTrue(e.getMessage().startsWith("page server sent 1 unexpected byte(s): server=host:27027"
                + " last_command=OPEN2 pagemap=pagemap-7.img"), e.getMessage());
    }

    @Test
    void stopWakesAThreadInAwait() {
        ReplyReader reader = new ReplyReader("host:27027");
        reader.start(Sinks.many().unicast().<ByteBuf>onBackpressureBuffer().asFlux());
        new Thread(() -> {
            sleepQuietly(50);
            reader.stop();
        }).start();
        PageServerException e = assertThrows(PageServerException.class,
                () -> reader.await(1, () -> "OPEN2", Duration.ofSeconds(30).toNanos()));
        assertEquals("page server session ended: server=host:27027 while=waiting for the reply to OPEN2", e.getMessage());
    }

    private static void sleepQuietly(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
