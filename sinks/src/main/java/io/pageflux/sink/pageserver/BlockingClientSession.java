package io.pageflux.sink.pageserver;

import io.pageflux.sink.DumpContext;
import io.pageflux.sink.SinkResult;
import io.pageflux.sink.criu.CriuLayout;
import io.pageflux.source.PageChunk;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * One dump sent over one plain-TCP connection with blocking writes; TLS goes through
 * {@link ClientSession} (reactor-netty). Same wire bytes, same errors.
 *
 * <p>Everything happens on the thread that delivers the chunks (the reader's), one step after the
 * other: a chunk's headers and page bytes go out in one gathering {@code write} straight from its
 * pooled buffer, and the chunk is released when that write returned. The write blocking is the
 * backpressure: the next chunk is requested (one ahead) only then, so a slow network holds back the
 * reader instead of growing a queue. PARENT, OPEN2 and CLOSE are written the same way and their
 * answers awaited on the same thread; {@link ReplyReader#start(SocketChannel)} reads the socket on a
 * mostly idle thread of its own, so that a server that hangs up mid-stream is noticed by the next
 * chunk.
 *
 * <p>Why synchronous rather than a chain of Monos per chunk and per request: in a JVM that lives
 * for one dump, the per-chunk Java code runs interpreted for most of the dump (a 1 GiB dump is
 * only 256 chunks of 4 MiB, too few calls for the JIT), and each Reactor operator per chunk, each
 * {@code Mono.timeout} (which starts a scheduler), each string built per request cost there. On
 * loopback with 2 cores that was most of what a one-shot client spent beyond a warm one (see the
 * README's page-server section).
 */
final class BlockingClientSession {

    /** How long a finished dump waits for the server to close its side (see {@link #awaitServerEnd}). */
    private static final Duration MAX_END_WAIT = Duration.ofSeconds(10);
    private static final int HEADER = PageServerWire.HEADER_BYTES;

    private final SocketChannel socket;
    private final String server;
    private final ReplyReader replies;
    private final boolean askParent;
    private final Duration replyTimeout;
    private final DumpContext context;

    /** Pagemaps opened so far and whether the server has a parent for each. */
    private final Map<PagemapId, Boolean> opened = new HashMap<>();
    private final Set<PagemapId> askedParent = new HashSet<>();
    private PagemapId current;
    /** Set when the dump is cancelled: a write that then fails (the socket was closed) is no error. */
    private volatile boolean cancelled;

    /** Headers of the write being gathered, little-endian, direct (no copy into a temporary buffer). */
    private ByteBuffer headers = ByteBuffer.allocateDirect(64 * HEADER).order(ByteOrder.LITTLE_ENDIAN);
    /** The write being gathered: header slices and page slices, in wire order. */
    private ByteBuffer[] parts = new ByteBuffer[64];
    private int partCount;

    /** The last request sent: a reply-less ADD_F, or a command awaiting its answer. Described only for errors. */
    private int lastCmd;
    private long lastNrPages;
    private long lastVaddr;
    private long lastDstId;
    private boolean lastIsAdd;
    private long bytesSent;
    private long pagesSent;
    private long entries;

    BlockingClientSession(SocketChannel socket, String server, boolean askParent, Duration replyTimeout,
                          DumpContext context) {
        this.socket = socket;
        this.server = server;
        this.askParent = askParent;
        this.replyTimeout = replyTimeout;
        this.context = context;
        this.replies = new ReplyReader(server);
    }

    /**
     * Opens the session (PARENT for the task when asked, then OPEN2 per pagemap), sends the chunks,
     * then CLOSE; completes with the counts once the server has answered CLOSE (and closed, or
     * {@link #MAX_END_WAIT} passed).
     */
    Mono<SinkResult> run(Flux<PageChunk> chunks) {
        return Mono.fromRunnable(this::open)
                .thenMany(chunks)
                // the next chunk is asked for only when send() returned: on this thread, reading and
                // writing to the socket alternate (the kernel's socket buffer is what overlaps them)
                .limitRate(1)
                .doOnNext(this::send)
                // chunks still queued when the dump fails or is cancelled (the one in send() releases itself)
                .doOnDiscard(PageChunk.class, PageChunk::release)
                .then(Mono.fromCallable(this::close))
                .doOnCancel(() -> cancelled = true)
                .doFinally(s -> replies.stop());
    }

    private void open() {
        replies.start(socket);
        // PARENT for the task first, before any shared-memory pagemap: a chaining server picks the
        // session's parent by the first task it is asked about (a shmem id names no process)
        if (askParent) {
            askParentOf(PagemapId.task(context.pid()));
        }
        for (PagemapId pagemap : CriuLayout.pagemapOrder(context)) { // numbered (pages_id) as a local dump does
            open(pagemap);
        }
    }

    /** Sends one chunk's runs; the chunk goes back to its pool when the write has returned (or failed). */
    private void send(PageChunk chunk) {
        try {
            replies.check();
            ByteBuffer data = chunk.data();
            long offset = 0;
            List<PageRun> runs = chunk.runs();
            for (int i = 0, n = runs.size(); i < n; i++) {
                PageRun run = runs.get(i);
                if (!run.pagemap().equals(current)) {
                    open(run.pagemap()); // writes what was gathered so far, with the OPEN2
                }
                addRun(data, run, offset);
                offset += run.bytes();
            }
            writeGathered();
        } finally {
            chunk.release();
        }
    }

    private void addRun(ByteBuffer data, PageRun run, long offset) {
        int flags = run.flags();
        boolean present = PageFlags.has(flags, PageFlags.PE_PRESENT);
        ClientReplies.checkParentHoles(server, run, opened.get(run.pagemap()));
        long dstId = run.pagemap().dstId();
        int cmd = (flags << 16) | PageServerWire.OP_ADD_F;
        for (long done = 0; done < run.pages(); ) {
            long n = Math.min(ClientSession.MAX_PAGES_PER_HEADER, run.pages() - done);
            long vaddr = run.pagemapVaddr() + done * PageRun.PAGE_SIZE;
            addHeader(cmd, n, vaddr, dstId);
            lastIsAdd = true;
            entries++;
            if (present) {
                int from = (int) (offset + done * PageRun.PAGE_SIZE);
                int len = (int) (n * PageRun.PAGE_SIZE);
                addPart(data.slice(from, len));
                bytesSent += len;
                pagesSent += n;
            }
            done += n;
        }
    }

    /** Appends a 32-byte header (see {@link PageServerWire}) to the write being gathered. */
    private void addHeader(int cmd, long nrPages, long vaddr, long dstId) {
        if (headers.remaining() < HEADER) {
            // more runs in one write than ever before: a bigger buffer; the gathered slices keep the old one alive
            headers = ByteBuffer.allocateDirect(headers.capacity() * 2).order(ByteOrder.LITTLE_ENDIAN);
        }
        int at = headers.position();
        headers.putInt(at + PageServerWire.OFF_CMD, cmd)
                .putInt(at + PageServerWire.OFF_PAD, 0)
                .putLong(at + PageServerWire.OFF_NR_PAGES, nrPages)
                .putLong(at + PageServerWire.OFF_VADDR, vaddr)
                .putLong(at + PageServerWire.OFF_DST_ID, dstId);
        headers.position(at + HEADER);
        addPart(headers.slice(at, HEADER));
        lastCmd = cmd;
        lastNrPages = nrPages;
        lastVaddr = vaddr;
        lastDstId = dstId;
        bytesSent += HEADER;
    }

    private void addPart(ByteBuffer part) {
        if (partCount == parts.length) {
            parts = Arrays.copyOf(parts, parts.length * 2);
        }
        parts[partCount++] = part;
    }

    /** Writes what was gathered; returns when the socket took all of it. */
    private void writeGathered() {
        try {
            int first = 0;
            while (first < partCount) {
                socket.write(parts, first, partCount - first);
                while (first < partCount && !parts[first].hasRemaining()) {
                    first++;
                }
            }
        } catch (IOException e) {
            throw lost(e);
        } finally {
            Arrays.fill(parts, 0, partCount, null); // no reference to a released chunk's buffer
            partCount = 0;
            headers.clear();
        }
    }

    /** PARENT (first time only, when asked) then OPEN2; remembers the has-parent answer. */
    private void open(PagemapId pagemap) {
        if (askParent) {
            askParentOf(pagemap);
        }
        ByteBuffer reply = request(PageServerWire.OP_OPEN2, pagemap.dstId(), PageServerWire.OPEN2_REPLY_BYTES);
        opened.put(pagemap, booleanReply(reply.get(0), "OPEN2", pagemap));
        current = pagemap;
    }

    /** PARENT, once per pagemap. */
    private void askParentOf(PagemapId pagemap) {
        if (askedParent.add(pagemap)) {
            booleanReply(request(PageServerWire.OP_PARENT, pagemap.dstId(), PageServerWire.PARENT_REPLY_BYTES).getInt(0),
                    "PARENT", pagemap);
        }
    }

    private boolean booleanReply(int value, String command, PagemapId pagemap) {
        return ClientReplies.booleanReply(server, value, command, pagemap);
    }

    private SinkResult close() {
        replies.check();
        ClientReplies.closeReply(server, request(PageServerWire.CMD_CLOSE, 0, PageServerWire.CLOSE_REPLY_BYTES).getInt(0));
        replies.check();
        awaitServerEnd();
        return new SinkResult("page-server:" + server, pagesSent, bytesSent, entries);
    }

    /**
     * Half-closes and waits (at most the reply timeout, at most 10 s) until the server has closed its
     * side too. pageflux's server publishes the session directory when the client hangs up, then
     * closes; waiting for that makes the directory visible when the dump returns, so the next dump
     * of a migration finds it as its parent. CLOSE's 0 already meant durable: no error here, and no
     * long wait for a server that keeps the connection open.
     */
    private void awaitServerEnd() {
        try {
            socket.shutdownOutput();
        } catch (IOException e) {
            return;
        }
        Duration wait = replyTimeout.compareTo(MAX_END_WAIT) < 0 ? replyTimeout : MAX_END_WAIT;
        replies.awaitEnd(wait.toNanos());
    }

    /**
     * Sends a request header (after whatever was gathered) and waits for its {@code replyBytes}-byte
     * answer; returns it little-endian, position 0.
     */
    private ByteBuffer request(int cmd, long dstId, int replyBytes) {
        addHeader(cmd, 0, 0, dstId);
        lastIsAdd = false;
        writeGathered();
        ByteBuffer reply = replies.await(replyBytes, this::describeRequest, replyTimeout.toNanos());
        if (reply == null) {
            throw new PageServerException("page server did not answer: server=" + server + " command="
                    + describeRequest() + " timeout=" + replyTimeout + "; is it a CRIU page server, and is it"
                    + " overloaded? check host and port and the server's log");
        }
        return reply;
    }

    /** The last request for messages, e.g. {@code OPEN2 pagemap=pagemap-42.img}; built only when needed. */
    private String describeRequest() {
        return PageServerWire.opName(lastCmd) + (lastDstId != 0 ? " pagemap=" + PageServerWire.pagemapOf(lastDstId) : "");
    }

    private PageServerException lost(Throwable cause) {
        try {
            replies.check();
        } catch (PageServerException known) {
            return known;
        }
        if (cancelled) {
            // the socket was closed because the dump was cancelled: nobody sees this error
            return new PageServerException("page server session cancelled: server=" + server, cause);
        }
        String command = lastIsAdd ? new PageServerHeader(lastCmd, 0, lastNrPages, lastVaddr, lastDstId).toString()
                : describeRequest();
        return new PageServerException("page server connection lost: server=" + server + " command=" + command
                + " bytes_sent=" + bytesSent + " cause=" + cause + "; the server keeps nothing complete from this"
                + " session (it commits only after CLOSE): check the network and the server's log, then retry", cause);
    }
}
