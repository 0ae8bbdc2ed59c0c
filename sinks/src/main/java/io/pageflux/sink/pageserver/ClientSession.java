package io.pageflux.sink.pageserver;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.pageflux.sink.DumpContext;
import io.pageflux.sink.SinkResult;
import io.pageflux.sink.criu.CriuLayout;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeoutException;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;

/**
 * One dump sent over one connection. Chunks are handled strictly one after another; a chunk's
 * bytes go to the socket straight from its pooled buffer (wrapped, not copied) and the chunk is
 * released when Netty has written its last byte. The next chunk is requested only when the
 * previous chunk's writes completed, so a slow network holds back the reader instead of growing a
 * queue: at most two chunks (one being written, one prefetched) are ever held here.
 *
 * <p>Used for TLS only: plain TCP goes through {@link BlockingClientSession}, which writes from the
 * reader's thread without Netty (no hand-off of every chunk to an event loop) and keeps the Netty
 * classes out of a plain dump's JVM.
 */
final class ClientSession {

    /** Longer runs are split; well below any server's sensible per-header cap. */
    static final long MAX_PAGES_PER_HEADER = 1L << 16;

    private final Connection connection;
    private final Channel channel;
    private final String server;
    private final ReplyReader replies;
    private final boolean askParent;
    private final Duration replyTimeout;
    private final DumpContext context;

    /** Pagemaps opened so far and whether the server has a parent for each. */
    private final Map<PagemapId, Boolean> opened = new HashMap<>();
    private final Set<PagemapId> askedParent = new HashSet<>();
    /** Chunks received and not yet released. */
    private final Set<ChunkWrites> held = ConcurrentHashMap.newKeySet();
    private volatile boolean terminated;
    private PagemapId current;
    private String lastCommand = "none";

    /** The last ADD_F header sent; described only when an error names it (not once per header). */
    private PageServerHeader lastAdd;
    private long bytesSent;
    private long pagesSent;
    private long entries;

    ClientSession(Connection connection, String server, boolean askParent, Duration replyTimeout,
                  DumpContext context) {
        this.connection = connection;
        this.channel = connection.channel();
        this.server = server;
        this.askParent = askParent;
        this.replyTimeout = replyTimeout;
        this.context = context;
        this.replies = new ReplyReader(server);
    }

    Mono<SinkResult> run(Flux<PageChunk> chunks) {
        replies.start(connection.inbound().receive());
        // PARENT for the task first, before any shared-memory pagemap: a chaining server picks the
        // session's parent by the first task it is asked about (a shmem id names no process)
        Mono<Void> taskParent = askParent ? askParentOf(PagemapId.task(context.pid())) : Mono.empty();
        return taskParent
                .thenMany(Flux.fromIterable(CriuLayout.pagemapOrder(context))) // numbered (pages_id) as a local dump does
                .concatMap(this::open)
                .thenMany(chunks)
                .map(this::track)
                // prefetch 1: read one chunk ahead while the current one is on the wire, no more
                .concatMap(this::sendChunk, 1)
                .doOnDiscard(ChunkWrites.class, ChunkWrites::releaseWhenWritten)
                .doOnDiscard(PageChunk.class, PageChunk::release)
                .then(Mono.defer(this::close))
                .then(Mono.fromSupplier(() -> new SinkResult("page-server:" + server, pagesSent, bytesSent, entries)))
                // before the result or the error reaches the subscriber (doFinally would run after it, and a
                // caller that checks its pool right after block() threw could still find chunks leased)
                .doOnTerminate(this::end)
                .doOnCancel(this::end);
    }

    private void end() {
        replies.stop();
        releaseAll();
    }

    /**
     * Registers a chunk as held by this session. A chunk whose onNext races with a cancel may be
     * stranded inside an operator's queue; {@link #releaseAll} finds it here.
     */
    private ChunkWrites track(PageChunk chunk) {
        ChunkWrites writes = new ChunkWrites(chunk);
        held.add(writes);
        if (terminated) {
            writes.releaseWhenWritten();
        }
        return writes;
    }

    /** Gives back every chunk still held, each once its last write is done (or now, if none). */
    private void releaseAll() {
        terminated = true;
        for (ChunkWrites writes : held) {
            writes.releaseWhenWritten();
        }
    }

    private Mono<Void> sendChunk(ChunkWrites writes) {
        return Mono.defer(() -> {
                    replies.check();
                    return sendRuns(writes, 0, 0);
                })
                .then(Mono.defer(writes::completion))
                .doFinally(s -> writes.releaseWhenWritten());
    }

    /** Writes runs from {@code index} on; leaves the loop only to wait for an OPEN2/PARENT reply. */
    private Mono<Void> sendRuns(ChunkWrites writes, int index, long offset) {
        List<PageRun> runs = writes.chunk.runs();
        while (index < runs.size()) {
            if (terminated) {
                return Mono.empty();
            }
            PageRun run = runs.get(index);
            if (!run.pagemap().equals(current)) {
                int i = index;
                long off = offset;
                return open(run.pagemap()).then(Mono.defer(() -> sendRuns(writes, i, off)));
            }
            writeRun(writes, run, offset);
            offset += run.bytes();
            index++;
        }
        channel.flush();
        return Mono.empty();
    }

    private void writeRun(ChunkWrites writes, PageRun run, long offset) {
        boolean present = PageFlags.has(run.flags(), PageFlags.PE_PRESENT);
        ClientReplies.checkParentHoles(server, run, opened.get(run.pagemap()));
        for (long done = 0; done < run.pages(); ) {
            long n = Math.min(MAX_PAGES_PER_HEADER, run.pages() - done);
            long vaddr = run.pagemapVaddr() + done * PageRun.PAGE_SIZE;
            PageServerHeader header = PageServerHeader.addF(run.pagemap(), vaddr, n, run.flags());
            lastAdd = header;
            if (!writes.write(headerBuf(header))) {
                return; // released by a cancel: the session is ending
            }
            bytesSent += PageServerWire.HEADER_BYTES;
            entries++;
            if (present) {
                int from = (int) (offset + done * PageRun.PAGE_SIZE);
                int len = (int) (n * PageRun.PAGE_SIZE);
                ByteBuffer slice = writes.data.duplicate().position(from).limit(from + len).slice();
                if (!writes.write(Unpooled.wrappedBuffer(slice))) {
                    return;
                }
                bytesSent += len;
                pagesSent += n;
            }
            done += n;
        }
    }

    /** PARENT (first time only, when asked) then OPEN2; remembers the has-parent answer. */
    private Mono<Void> open(PagemapId pagemap) {
        Mono<Void> parent = askParent ? askParentOf(pagemap) : Mono.empty();
        return parent
                .then(request(PageServerHeader.open2(pagemap), PageServerWire.OPEN2_REPLY_BYTES))
                .doOnNext(reply -> {
                    opened.put(pagemap, booleanReply(reply.get(), "OPEN2", pagemap));
                    current = pagemap;
                })
                .then();
    }

    /** PARENT, once per pagemap. */
    private Mono<Void> askParentOf(PagemapId pagemap) {
        return Mono.defer(() -> {
            if (!askedParent.add(pagemap)) {
                return Mono.empty();
            }
            return request(PageServerHeader.parent(pagemap), PageServerWire.PARENT_REPLY_BYTES)
                    .doOnNext(reply -> booleanReply(reply.getInt(), "PARENT", pagemap)).then();
        });
    }

    private boolean booleanReply(int value, String command, PagemapId pagemap) {
        return ClientReplies.booleanReply(server, value, command, pagemap);
    }

    private Mono<Void> close() {
        replies.check();
        return request(PageServerHeader.close(), PageServerWire.CLOSE_REPLY_BYTES)
                .doOnNext(reply -> {
                    ClientReplies.closeReply(server, reply.getInt());
                    replies.check();
                })
                .then();
    }

    /** Sends {@code header} and waits for its {@code replyBytes}-byte answer (little-endian view). */
    private Mono<ByteBuffer> request(PageServerHeader header, int replyBytes) {
        return Mono.defer(() -> {
            String command = PageServerWire.opName(header.cmd()) + (header.dstId() != 0
                    ? " pagemap=" + PageServerWire.pagemapOf(header.dstId()) : "");
            lastCommand = command;
            lastAdd = null;
            Mono<ByteBuffer> reply = replies.expect(replyBytes, command);
            Mono<Void> written = sent(channel.writeAndFlush(headerBuf(header)));
            bytesSent += PageServerWire.HEADER_BYTES;
            return written
                    .then(reply)
                    .timeout(replyTimeout)
                    .onErrorMap(TimeoutException.class, e -> new PageServerException("page server did not answer: server="
                            + server + " command=" + command + " timeout=" + replyTimeout + "; is it a CRIU page server,"
                            + " and is it overloaded? check host and port and the server's log", e));
        });
    }

    private Mono<Void> sent(ChannelFuture future) {
        return Mono.create(sink -> future.addListener(f -> {
            if (f.isSuccess()) {
                sink.success();
            } else {
                sink.error(lost(f.cause()));
            }
        }));
    }

    private ByteBuf headerBuf(PageServerHeader header) {
        ByteBuf buf = channel.alloc().ioBuffer(PageServerWire.HEADER_BYTES);
        ByteBuffer nio = buf.nioBuffer(0, PageServerWire.HEADER_BYTES);
        PageServerWire.encode(header, nio);
        return buf.writerIndex(PageServerWire.HEADER_BYTES);
    }

    private PageServerException lost(Throwable cause) {
        try {
            replies.check();
        } catch (PageServerException known) {
            return known;
        }
        return new PageServerException("page server connection lost: server=" + server + " command=" + (lastAdd != null ? lastAdd.toString() : lastCommand)
                + " bytes_sent=" + bytesSent + " cause=" + cause + "; the server keeps nothing complete from this"
                + " session (it commits only after CLOSE): check the network and the server's log, then retry", cause);
    }

    /**
     * The writes of one chunk: the chunk goes back to its pool once the last of them is done. Writing and
     * releasing hold this object's lock, so that a cancel releasing the chunk from another thread while
     * {@link #sendRuns} is still writing it cannot let a later write read memory already given back (the
     * pool unmaps it once the dump has ended): after the release, no more writes of this chunk are issued.
     */
    private final class ChunkWrites {
        final PageChunk chunk;
        final ByteBuffer data;
        volatile ChannelFuture last;
        private boolean released;

        ChunkWrites(PageChunk chunk) {
            this.chunk = chunk;
            this.data = chunk.data();
        }

        Mono<Void> completion() {
            ChannelFuture f = last;
            if (f == null) {
                return Mono.empty();
            }
            return Mono.create(sink -> f.addListener(done -> {
                if (done.isSuccess()) {
                    sink.success();
                } else {
                    sink.error(lost(done.cause()));
                }
            }));
        }

        /** Writes {@code buf} after the chunk's earlier writes; false (and nothing written) once released. */
        synchronized boolean write(ByteBuf buf) {
            if (released) {
                buf.release();
                return false;
            }
            last = channel.write(buf);
            return true;
        }

        /** Netty writes in order, so when the last write is done (or failed) all are. Once only. */
        void releaseWhenWritten() {
            held.remove(this);
            ChannelFuture f;
            synchronized (this) {
                if (released) {
                    return;
                }
                released = true;
                f = last;
            }
            if (f == null) {
                chunk.release();
            } else {
                f.addListener(done -> chunk.release());
            }
        }
    }
}
