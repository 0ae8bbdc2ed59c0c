package io.pageflux.sink.pageserver;

import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.socket.ChannelInputShutdownEvent;

/**
 * Passes a client's half-close (FIN while the server may still answer) down the pipeline as a
 * message, so it reaches the session after every byte read before it. Needs
 * {@code ALLOW_HALF_CLOSURE}: without it Netty closes the channel on FIN and the CLOSE answer
 * could not be sent to a client that half-closed after its last header.
 */
final class EndOfInputHandler extends ChannelInboundHandlerAdapter {

    /** The marker message; not reference counted. */
    static final Object END_OF_INPUT = new Object() {
        @Override
        public String toString() {
            return "END_OF_INPUT";
        }
    };

    @Override
    public void userEventTriggered(ChannelHandlerContext ctx, Object evt) throws Exception {
        if (evt == ChannelInputShutdownEvent.INSTANCE) {
            ctx.fireChannelRead(END_OF_INPUT);
        }
        super.userEventTriggered(ctx, evt);
    }
}
