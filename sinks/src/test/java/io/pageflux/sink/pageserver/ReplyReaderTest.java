package io.pageflux.sink.pageserver;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
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
}
