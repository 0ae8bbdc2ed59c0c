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
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.ArrayList;
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
 * <p>Plain TCP (no TLS) uses a blocking {@link SocketChannel} instead of Netty: a chunk's
 * headers and page bytes go out in one gathering write from the thread that delivered the chunk
 * (the reader's), and the chunk is released when that write returns. The write blocking is the
 * backpressure (no further chunk is requested meanwhile), and it saves the hand-off of every
 * chunk to an event loop thread: on loopback with 2 cores that hand-off, not the copying, was
 * what kept the client from a plain socket copy's rate (see the README's page-server section).
 * Replies are read by {@link ReplyReader#start(SocketChannel)}.
 */
final class ClientSession {

    /** Longer runs are split; well below any server's sensible per-header cap. */
    static final long MAX_PAGES_PER_HEADER = 1L << 16;
    /** How long a finished dump waits for the server to close its side (see awaitServerEnd). */
    private static final Duration MAX_END_WAIT = Duration.ofSeconds(10);

    private final Connection connection;
    private final Channel channel;
    /** Set instead of {@link #connection}/{@link #channel} for plain TCP: written with blocking writes. */
    private final SocketChannel socket;
    /** Blocking mode: the headers and page slices of the chunk being sent, written in one go. */
    private final List<ByteBuffer> gather = new ArrayList<>();
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
    /** Guards {@link #inBlockingWrite} and {@link #releaseAfterWrite}. */
    private final Object blockingWriteState = new Object();
    /** Blocking mode: the reader's thread is inside {@code socket.write}. */
    private boolean inBlockingWrite;
    /** Chunks released during a blocking write, given back when it returns. */
    private final List<ChunkWrites> releaseAfterWrite = new ArrayList<>();

    /** The last ADD_F header sent; described only when an error names it (not once per header). */
    private PageServerHeader lastAdd;
    private long bytesSent;
    private long pagesSent;
    private long entries;

    ClientSession(Connection connection, String server, boolean askParent, Duration replyTimeout,
                  DumpContext context) {
        this.connection = connection;
        this.channel = connection.channel();
        this.socket = null;
        this.server = server;
        this.askParent = askParent;
        this.replyTimeout = replyTimeout;
        this.context = context;
        this.replies = new ReplyReader(server);
    }

    ClientSession(SocketChannel socket, String server, boolean askParent, Duration replyTimeout,
                  DumpContext context) {
        this.connection = null;
        this.channel = null;
        this.socket = socket;
        this.server = server;
        this.askParent = askParent;
        this.replyTimeout = replyTimeout;
        this.context = context;
        this.replies = new ReplyReader(server);
    }

    Mono<SinkResult> run(Flux<PageChunk> chunks) {
        if (socket != null) {
            replies.start(socket);
        } else {
            replies.start(connection.inbound().receive());
        }
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
        if (socket != null) {
            writeGathered();
        } else {
            channel.flush();
        }
        return Mono.empty();
    }

    private void writeRun(ChunkWrites writes, PageRun run, long offset) {
        boolean present = PageFlags.has(run.flags(), PageFlags.PE_PRESENT);
        if (PageFlags.has(run.flags(), PageFlags.PE_PARENT) && !opened.get(run.pagemap())) {
            throw new PageServerException("page server has no parent images for the dump's holes: server=" + server
                    + " pagemap=" + run.pagemap() + " vaddr=0x" + Long.toHexString(run.pagemapVaddr())
                    + " (OPEN2 answered 0); start the server with --parent-images pointing at the previous dump,"
                    + " or dump without a parent");
        }
        for (long done = 0; done < run.pages(); ) {
            long n = Math.min(MAX_PAGES_PER_HEADER, run.pages() - done);
            long vaddr = run.pagemapVaddr() + done * PageRun.PAGE_SIZE;
            PageServerHeader header = PageServerHeader.addF(run.pagemap(), vaddr, n, run.flags());
            lastAdd = header;
            if (socket != null) {
                ByteBuffer h = ByteBuffer.allocate(PageServerWire.HEADER_BYTES);
                PageServerWire.encode(header, h.duplicate());
                gather.add(h);
            } else {
                writes.last = channel.write(headerBuf(header));
            }
            bytesSent += PageServerWire.HEADER_BYTES;
            entries++;
            if (present) {
                int from = (int) (offset + done * PageRun.PAGE_SIZE);
                int len = (int) (n * PageRun.PAGE_SIZE);
                ByteBuffer slice = writes.data.duplicate().position(from).limit(from + len).slice();
                if (socket != null) {
                    gather.add(slice);
                } else {
                    writes.last = channel.write(Unpooled.wrappedBuffer(slice));
                }
                bytesSent += len;
                pagesSent += n;
            }
            done += n;
        }
    }

    /**
     * Blocking mode: writes what {@link #writeRun} gathered; returns when the socket took all of it.
     * Chunks released meanwhile (a cancel, on another thread) go back to their pool only when it returns
     * or fails: the kernel may still be copying from their buffers.
     */
    private void writeGathered() {
        if (gather.isEmpty()) {
            return;
        }
        ByteBuffer[] parts = gather.toArray(new ByteBuffer[0]);
        gather.clear();
        synchronized (blockingWriteState) {
            inBlockingWrite = true;
        }
        try {
            int first = 0;
            while (first < parts.length) {
                socket.write(parts, first, parts.length - first);
                while (first < parts.length && !parts[first].hasRemaining()) {
                    first++;
                }
            }
        } catch (IOException e) {
            throw lost(e);
        } finally {
            List<ChunkWrites> deferred;
            synchronized (blockingWriteState) {
                inBlockingWrite = false;
                deferred = new ArrayList<>(releaseAfterWrite);
                releaseAfterWrite.clear();
            }
            deferred.forEach(w -> w.chunk.release());
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
        if (value != 0 && value != 1) {
            throw new PageServerException("page server gave a wrong reply: server=" + server + " command=" + command
                    + " pagemap=" + pagemap + " reply=" + value + " expected=0|1; it is not a CRIU page server"
                    + " or a broken one: check host and port");
        }
        return value == 1;
    }

    private Mono<Void> close() {
        replies.check();
        return request(PageServerHeader.close(), PageServerWire.CLOSE_REPLY_BYTES)
                .doOnNext(reply -> {
                    int value = reply.getInt();
                    if (value != 0) {
                        throw new PageServerException("page server refused to complete the dump: server=" + server
                                + " command=CLOSE reply=" + value + " expected=0; it could not store the images:"
                                + " check its log (disk space, permissions)");
                    }
                    replies.check();
                })
                .then(Mono.defer(this::awaitServerEnd));
    }

    /**
     * Blocking mode: half-closes and waits (at most the reply timeout) until the server has closed
     * its side too. pageflux's server publishes the session directory when the client hangs up,
     * then closes; waiting for that makes the directory visible when the dump returns, so the next
     * dump of a migration finds it as its parent. CLOSE's 0 already meant durable: no error here,
     * and no long wait for a server that keeps the connection open.
     */
    private Mono<Void> awaitServerEnd() {
        if (socket == null) {
            return Mono.empty();
        }
        try {
            socket.shutdownOutput();
        } catch (IOException e) {
            return Mono.empty();
        }
        Duration wait = replyTimeout.compareTo(MAX_END_WAIT) < 0 ? replyTimeout : MAX_END_WAIT;
        return replies.ended().timeout(wait).onErrorResume(e -> Mono.empty());
    }

    /** Sends {@code header} and waits for its {@code replyBytes}-byte answer (little-endian view). */
    private Mono<ByteBuffer> request(PageServerHeader header, int replyBytes) {
        return Mono.defer(() -> {
            String command = PageServerWire.opName(header.cmd()) + (header.dstId() != 0
                    ? " pagemap=" + PageServerWire.pagemapOf(header.dstId()) : "");
            lastCommand = command;
            lastAdd = null;
            Mono<ByteBuffer> reply = replies.expect(replyBytes, command);
            Mono<Void> written;
            if (socket != null) {
                written = Mono.fromRunnable(() -> {
                    ByteBuffer h = ByteBuffer.allocate(PageServerWire.HEADER_BYTES);
                    PageServerWire.encode(header, h.duplicate());
                    gather.add(h);
                    writeGathered();
                });
            } else {
                written = sent(channel.writeAndFlush(headerBuf(header)));
            }
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

    /** The writes of one chunk: the chunk goes back to its pool once the last of them is done. */
    private final class ChunkWrites {
        final PageChunk chunk;
        final ByteBuffer data;
        volatile ChannelFuture last;

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

        /**
         * Netty writes in order, so when the last write is done (or failed) all are. In blocking mode a
         * write in progress on the reader's thread may be reading this chunk: then it is released when
         * that write returns (see {@link #writeGathered}).
         */
        void releaseWhenWritten() {
            held.remove(this);
            synchronized (blockingWriteState) {
                if (inBlockingWrite) {
                    releaseAfterWrite.add(this);
                    return;
                }
            }
            ChannelFuture f = last;
            if (f == null) {
                chunk.release();
            } else {
                f.addListener(done -> chunk.release());
            }
        }
    }
}
