package io.pageflux.sink.pageserver;

import io.pageflux.sink.criu.ImageDirectoryWriter;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;

/**
 * The receiving side of one connection, free of networking: bytes in, replies and files out.
 * All methods are synchronized; the server calls them from the session's worker thread (data,
 * end of stream) and from the event loop (idle timeout).
 *
 * <p><b>Lifecycle of the directory.</b> The first OPEN creates an {@link ImageDirectoryWriter}
 * whose final name is the hidden {@code DIR/.incoming-<seq>}, written in its own temporary
 * sibling. CLOSE commits it (fsync + rename to {@code .incoming-<seq>}) and only then answers 0,
 * so a 0 means the pages are on disk. When the client then hangs up without sending another byte,
 * the directory is renamed to its visible name ({@link #sessionDirName}). A session that fails
 * at any point leaves no visible directory: before CLOSE the writer aborts (its temporary
 * directory is deleted), after CLOSE the hidden {@code .incoming-<seq>} is deleted. Names that
 * start with a dot are therefore never complete sessions.
 */
final class ServerSession implements WireDecoder.Listener {

    /** The most pages one GET answer carries (1 MiB): bounds the answer's memory; the client asks again for more. */
    static final long MAX_GET_PAGES = 256;

    /** A reason to end this session; never escapes the server. */
    static final class SessionFailure extends RuntimeException {
        SessionFailure(String reason) {
            super(reason, null, false, false);
        }
    }

    /** Where replies go (the connection). */
    interface Output {
        /** Queues {@code bytes} to the client; the future completes once they were written (or failed). */
        Future<?> reply(ByteBuffer bytes);
    }

    private enum State { ACTIVE, CLOSED, DONE }

    private final long id;
    private final String remote;
    private final Instant started;
    private final ServerConfig config;
    private final Output output;
    private final Consumer<SessionEvent> events;
    private final SessionDirectories sessions;
    private final WireDecoder decoder;
    private final int pageSize;

    private State state = State.ACTIVE;
    private ImageDirectoryWriter writer;
    private ImageDirectoryWriter.PagemapWriter current;
    private final Set<PagemapId> announced = new HashSet<>();
    private long firstTaskId;
    private long bytesReceived;
    private long bytesAtClose;
    private PageServerHeader lastHeader;
    /** Chain mode: the parent of this session, decided by the first PARENT that names a task. */
    private boolean parentDecided;
    private Optional<Path> chainParent = Optional.empty();
    /** GET: the images served per pid, opened on the first GET for it. */
    private final Map<Long, LazyPages> served = new HashMap<>();

    /** The PE_PRESENT run whose bytes are arriving. */
    private long runVaddr;
    private int runFlags;
    /** Holds a page split across reads; whole pages go to the writer straight from the socket's buffers. */
    private ByteBuffer carry;
    /** Bytes of the current run spliced into the pages file that do not make a whole page yet. */
    private long splicedPartial;

    ServerSession(long id, String remote, Instant started, ServerConfig config, SessionDirectories sessions,
                  Output output, Consumer<SessionEvent> events) {
        this.id = id;
        this.remote = remote;
        this.started = started;
        this.config = config;
        this.output = output;
        this.events = events;
        this.sessions = sessions;
        this.pageSize = config.pageSize();
        this.decoder = new WireDecoder(this, pageSize);
    }

    long id() {
        return id;
    }

    synchronized boolean isDone() {
        return state == State.DONE;
    }

    /**
     * Consumes bytes from the client.
     *
     * @throws SessionFailure when the bytes break the protocol or a limit; call {@link #fail} with it
     */
    synchronized void onData(ByteBuffer in) {
        if (state == State.DONE) {
            return;
        }
        if (state == State.CLOSED && in.hasRemaining()) {
            throw failure("data after CLOSE: bytes=" + in.remaining() + " (a client sends nothing after CLOSE)");
        }
        bytesReceived += in.remaining();
        if (bytesReceived > config.maxBytesPerSession()) {
            throw failure("session exceeds max_bytes_per_session=" + config.maxBytesPerSession() + " received="
                    + bytesReceived + " (raise --max-session-bytes if such dumps are expected)");
        }
        decoder.feed(in);
        if (state == State.CLOSED && decoder.bytesConsumed() > bytesAtClose) {
            throw failure("data after CLOSE: bytes=" + (decoder.bytesConsumed() - bytesAtClose)
                    + " (a client sends nothing after CLOSE)");
        }
    }

    /*
     * Splicing (PlainTcpTransport): the page bytes of a present run can go from the socket to the pages file
     * without passing through this class. The transport asks spliceable(), moves bytes to spliceFile() at
     * spliceOffset(), then reports them with onSpliced(); headers still come through onData().
     */

    /**
     * How many of the current run's page bytes the transport may splice straight into the pages file: all
     * that remain of a present run when at least {@code min} remain (or a spliced page is unfinished), no
     * page is half-copied, and the pages file is written through the page cache; else 0.
     */
    synchronized long spliceable(long min) {
        long left = decoder.payloadRemaining();
        if (state != State.ACTIVE || left == 0 || current == null || !PageFlags.has(runFlags, PageFlags.PE_PRESENT)
                || (carry != null && carry.position() > 0) || current.directIo()) {
            return 0;
        }
        return left >= min || splicedPartial > 0 ? left : 0;
    }

    /**
     * The bytes that complete a page half-received through {@link #onData}, when a run with at least {@code min}
     * more bytes follows (splicing starts at a page boundary); else 0. Also 0 when that run could not be
     * spliced anyway ({@link #spliceable}'s conditions: not present, or an O_DIRECT pages file): cutting the
     * next read short would only make more, smaller reads.
     */
    synchronized int pageRemainder(long min) {
        if (state != State.ACTIVE || carry == null || carry.position() == 0 || current == null
                || !PageFlags.has(runFlags, PageFlags.PE_PRESENT) || current.directIo()) {
            return 0;
        }
        int fill = carry.remaining();
        return decoder.payloadRemaining() - fill >= min ? fill : 0;
    }

    /** True between messages (no partial header, no payload expected). */
    synchronized boolean atBoundary() {
        return decoder.atBoundary();
    }

    /** The pages file that spliced bytes go to. */
    synchronized Path spliceFile() {
        return current.pagesFile();
    }

    /** Where the next spliced byte goes in {@link #spliceFile()} (everything staged is written first). */
    synchronized long spliceOffset() {
        try {
            return current.appendOffset();
        } catch (RuntimeException e) {
            throw failure("cannot write pages: pagemap=" + current.id() + " cause=\"" + e.getMessage() + "\"");
        }
    }

    /** {@code n} bytes of the current run were spliced to {@link #spliceOffset()}: counts them and adds whole pages. */
    synchronized void onSpliced(long n) {
        bytesReceived += n;
        if (bytesReceived > config.maxBytesPerSession()) {
            throw failure("session exceeds max_bytes_per_session=" + config.maxBytesPerSession() + " received="
                    + bytesReceived + " (raise --max-session-bytes if such dumps are expected)");
        }
        decoder.payloadElsewhere(n);
        splicedPartial += n;
        long pages = splicedPartial / pageSize;
        try {
            current.appendedElsewhere(n);
            if (pages > 0) {
                current.addAppended(runVaddr, pages, runFlags);
            }
        } catch (RuntimeException e) {
            throw failure("cannot store pages: pagemap=" + current.id() + " vaddr=0x" + Long.toHexString(runVaddr)
                    + " cause=\"" + e.getMessage() + "\"");
        }
        splicedPartial -= pages * pageSize;
        runVaddr += pages * pageSize;
    }

    @Override
    public void onHeader(PageServerHeader h) {
        lastHeader = h;
        if (state != State.ACTIVE) {
            throw failure("data after CLOSE: header " + h);
        }
        int cmd = h.cmd();
        if (cmd == PageServerWire.CMD_CLOSE || cmd == PageServerWire.CMD_FORCE_CLOSE) {
            close(h);
            return;
        }
        switch (h.op()) {
            case PageServerWire.OP_PARENT -> {
                PagemapId pm = pagemap(h);
                decideParent(pm);
                send(intReply(hasParent(pm) ? 1 : 0), h);
            }
            case PageServerWire.OP_OPEN -> open(pagemap(h));
            case PageServerWire.OP_OPEN2 -> {
                PagemapId pm = pagemap(h);
                open(pm);
                send(ByteBuffer.wrap(new byte[] {(byte) (hasParent(pm) ? 1 : 0)}), h);
            }
            case PageServerWire.OP_ADD_F -> run(h, h.flags());
            case PageServerWire.OP_ADD -> run(h, PageFlags.PE_PRESENT);
            case PageServerWire.OP_HOLE -> run(h, PageFlags.PE_PARENT);
            case PageServerWire.OP_GET -> get(h);
            default -> throw failure("unknown command cmd=0x" + Integer.toHexString(cmd) + " header=\"" + h
                    + "\": the client is not a CRIU page-server client or speaks a newer protocol");
        }
    }

    @Override
    public void onPayload(ByteBuffer part) {
        while (part.hasRemaining()) {
            if (carry.position() > 0 || part.remaining() < pageSize) {
                int n = Math.min(part.remaining(), carry.remaining());
                carry.put(part.slice().limit(n));
                part.position(part.position() + n);
                if (!carry.hasRemaining()) {
                    carry.flip();
                    addPresent(1, carry);
                    carry.clear();
                }
            } else {
                int pages = part.remaining() / pageSize;
                int len = pages * pageSize;
                ByteBuffer whole = part.slice().limit(len);
                part.position(part.position() + len);
                addPresent(pages, whole);
            }
        }
    }

    private void addPresent(long pages, ByteBuffer bytes) {
        try {
            current.add(runVaddr, pages, runFlags, bytes);
        } catch (RuntimeException e) {
            throw failure("cannot store pages: pagemap=" + current.id() + " vaddr=0x" + Long.toHexString(runVaddr)
                    + " cause=\"" + e.getMessage() + "\"");
        }
        runVaddr += pages * pageSize;
    }

    private void run(PageServerHeader h, int flags) {
        if (current == null) {
            throw failure("run before OPEN header=\"" + h + "\": the client must OPEN2 a pagemap first");
        }
        int known = PageFlags.PE_PARENT | PageFlags.PE_LAZY | PageFlags.PE_PRESENT;
        boolean present = PageFlags.has(flags, PageFlags.PE_PRESENT);
        if (flags == 0 || (flags & ~known) != 0 || (present && PageFlags.has(flags, PageFlags.PE_PARENT))) {
            throw failure("invalid flags=" + PageFlags.describe(flags) + " header=\"" + h + "\"");
        }
        long n = h.nrPages();
        checkPageCount(n, h, "");
        long v = h.vaddr();
        if (v % pageSize != 0 || Long.compareUnsigned(v, -1L - n * pageSize) > 0) {
            throw failure("vaddr=0x" + Long.toHexString(v) + " is not page aligned or the run wraps around"
                    + " header=\"" + h + "\"");
        }
        long payload = h.payloadBytes(pageSize);
        // what was decoded up to this header, not bytesReceived: that counts the whole read, and the read may
        // already hold this run's pages
        long consumed = decoder.bytesConsumed();
        if (payload > config.maxBytesPerSession() - consumed) {
            throw failure("run would exceed max_bytes_per_session=" + config.maxBytesPerSession() + " received="
                    + consumed + " announced=" + payload + " header=\"" + h + "\" (raise --max-session-bytes if"
                    + " such dumps are expected)");
        }
        if (present) {
            runVaddr = v;
            runFlags = flags;
            if (carry == null) {
                carry = ByteBuffer.allocateDirect(pageSize);
            }
        } else {
            try {
                current.add(v, n, flags, null);
            } catch (RuntimeException e) {
                throw failure("cannot store run: header=\"" + h + "\" cause=\"" + e.getMessage() + "\"");
            }
        }
    }

    /**
     * GET (lazy restore, remote parent reads): answers an ADD_F[PE_PRESENT] header echoing vaddr and
     * dst_id, with nr_pages = how many of the asked pages follow (fewer than asked when the run
     * they are in ends sooner, at most {@link #MAX_GET_PAGES}; 0 when the pages are not in the
     * images), then their bytes. dst_id is the plain pid. Waits until the answer was written, so
     * a client that asks without reading cannot pile answers up in the server's memory.
     */
    private void get(PageServerHeader h) {
        long pid = h.dstId();
        if (pid <= 0 || pid > Integer.MAX_VALUE) {
            throw failure("GET dst_id=0x" + Long.toHexString(pid) + " is not a pid header=\"" + h
                    + "\" (GET names the task by its plain pid, no type byte)");
        }
        long n = h.nrPages();
        checkPageCount(n, h, "GET ");
        long v = h.vaddr();
        if (v % pageSize != 0 || Long.compareUnsigned(v, -1L - n * pageSize) > 0) {
            throw failure("GET vaddr=0x" + Long.toHexString(v) + " is not page aligned or the range wraps around"
                    + " header=\"" + h + "\"");
        }
        LazyPages source = served.computeIfAbsent(pid, this::lazyPages);
        ByteBuffer reply;
        try {
            reply = source.read(v, Math.min(n, MAX_GET_PAGES), PageServerWire.HEADER_BYTES);
        } catch (IOException | RuntimeException e) {
            throw failure("GET cannot read pid=" + pid + " vaddr=0x" + Long.toHexString(v) + " from dir="
                    + source.describe() + " cause=\"" + e.getMessage() + "\"");
        }
        long pages = (reply.remaining() - PageServerWire.HEADER_BYTES) / pageSize;
        PageServerHeader answer = new PageServerHeader((PageFlags.PE_PRESENT << 16) | PageServerWire.OP_ADD_F, 0,
                pages, v, h.dstId());
        PageServerWire.encode(answer, reply.duplicate());
        send(reply, h);
    }

    /**
     * {@code nr_pages} of a run or GET: at least 1 and at most {@link ServerConfig#maxPagesPerHeader()}, checked
     * before any of the pages is read.
     */
    private void checkPageCount(long n, PageServerHeader h, String what) {
        if (n == 0) {
            throw failure(what + "nr_pages=0 header=\"" + h + "\" (a run or GET covers at least one page)");
        }
        if (Long.compareUnsigned(n, config.maxPagesPerHeader()) > 0) {
            throw failure(what + "nr_pages=" + Long.toUnsignedString(n) + " exceeds max_pages_per_header="
                    + config.maxPagesPerHeader() + " header=\"" + h + "\" (raise --max-header-pages if such runs are"
                    + " expected)");
        }
    }

    /**
     * Sends the answer to {@code h} and waits until it was written (within the idle timeout). An answer that
     * cannot be sent ends the session at once: the client reset the connection or stopped reading, and cannot
     * know what the server did. After CLOSE this matters most: the session must not be published as complete
     * when the client never got the answer that says its pages are on disk, whatever the transport does next
     * (an end of stream read after the reset must not complete it). Waiting also bounds what a client that
     * asks without reading can pile up in the server's memory.
     *
     * @throws SessionFailure after the session failed ({@link #fail}) with the reason
     */
    private void send(ByteBuffer reply, PageServerHeader h) {
        long idleMillis = config.idleTimeout().toMillis();
        String command = PageServerWire.opName(h.cmd());
        Future<?> written = output.reply(reply);
        String reason;
        try {
            written.get(idleMillis, TimeUnit.MILLISECONDS);
            return;
        } catch (TimeoutException e) {
            reason = "cannot send the answer to " + command + ": not read by the client within idle_timeout_ms="
                    + idleMillis + " header=\"" + h + "\" (nothing kept)";
        } catch (ExecutionException e) {
            reason = "cannot send the answer to " + command + ": cause=\"" + e.getCause() + "\" header=\"" + h
                    + "\" (the client reset the connection or stopped reading; nothing kept)";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            reason = "interrupted while sending the answer to " + command + " header=\"" + h + "\"";
        }
        fail(reason);
        throw failure(reason);
    }

    /** The images GET serves for {@code pid}: the newest completed session with its pagemap, else the parent images. */
    private LazyPages lazyPages(long pid) {
        PagemapId task = PagemapId.task(pid);
        Optional<Path> dir = sessions.newestWith(task);
        if (dir.isEmpty()) {
            dir = config.parentImages().filter(p -> Files.isRegularFile(p.resolve(task.pagemapFileName())));
        }
        return new LazyPages(task, dir, pageSize);
    }

    private PagemapId pagemap(PageServerHeader h) {
        try {
            return PageServerWire.pagemapOf(h.dstId());
        } catch (IllegalArgumentException e) {
            throw failure(e.getMessage() + " header=\"" + h + "\"");
        }
    }

    private boolean hasParent(PagemapId pm) {
        return parentImages()
                .map(dir -> Files.isRegularFile(dir.resolve(pm.pagemapFileName())))
                .orElse(false);
    }

    /** The images this session's holes refer to: the configured ones, or in chain mode the decided session. */
    private Optional<Path> parentImages() {
        return config.chain() ? chainParent : config.parentImages();
    }

    /**
     * Chain mode: the first PARENT naming a task fixes the session's parent — the newest completed
     * session with that task's pagemap, else the configured parent images if they have it, else none.
     * A shared-memory pagemap does not name a process (several may map the object), so PARENT and
     * OPEN2 for one asked before any task are answered 0: the client then sends its pages in full.
     */
    private void decideParent(PagemapId pm) {
        if (!config.chain() || parentDecided || pm.kind() != PagemapId.Kind.TASK) {
            return;
        }
        parentDecided = true;
        chainParent = sessions.newestWith(pm);
        if (chainParent.isEmpty()) {
            chainParent = config.parentImages().filter(dir -> Files.isRegularFile(dir.resolve(pm.pagemapFileName())));
        }
        if (chainParent.isPresent() && writer != null) {
            // the session's directory exists already (a pagemap was opened first): link it now
            Path link = writer.temporaryDirectory().resolve("parent");
            try {
                Files.createSymbolicLink(link, parentLink(chainParent.get()));
            } catch (IOException e) {
                throw failure("cannot link the session to its parent: link=" + link + " parent=" + chainParent.get()
                        + " cause=\"" + e + "\"");
            }
        }
        events.accept(new SessionEvent.ParentChosen(id, remote, pm, chainParent));
    }

    /** The relative {@code parent} link from a session directory ({@code DIR/<session>}) to {@code parent}. */
    private Path parentLink(Path parent) {
        return Path.of("..").resolve(config.directory().relativize(parent));
    }

    private void open(PagemapId pm) {
        if (writer == null) {
            ImageDirectoryWriter.Options options = ImageDirectoryWriter.Options.defaults()
                    .withFirstPagesId(ImageDirectoryWriter.Options.PAGE_SERVER_FIRST_PAGES_ID)
                    .withDirectIo(config.directIo());
            Optional<Path> link = config.chain() ? chainParent.map(this::parentLink) : config.parentLink();
            if (link.isPresent()) {
                options = options.withParentLink(link.get());
            }
            try {
                writer = ImageDirectoryWriter.create(incomingDir(), options);
            } catch (RuntimeException e) {
                throw failure("cannot create the session directory: dir=" + incomingDir() + " cause=\""
                        + e.getMessage() + "\"");
            }
        }
        if (pm.kind() == PagemapId.Kind.TASK && firstTaskId == 0) {
            firstTaskId = pm.id();
        }
        try {
            current = writer.openPagemap(pm);
        } catch (RuntimeException e) {
            throw failure("cannot open " + pm + ": cause=\"" + e.getMessage() + "\"");
        }
        if (announced.add(pm)) {
            events.accept(new SessionEvent.Opened(id, remote, pm, current.pagesId(), hasParent(pm)));
        }
    }

    /**
     * Commits to the hidden name, then answers 0: the answer means the pages are durable. The session completes
     * only if that answer was sent and the client then hung up without sending more.
     */
    private void close(PageServerHeader h) {
        if (writer != null) {
            try {
                writer.commit();
            } catch (RuntimeException e) {
                throw failure("cannot commit the session directory: dir=" + incomingDir() + " cause=\""
                        + e.getMessage() + "\"");
            }
        }
        state = State.CLOSED;
        bytesAtClose = decoder.bytesConsumed();
        send(intReply(0), h);
    }

    /** The client hung up. Complete if CLOSE was answered, else a failure. */
    synchronized void onEof() {
        if (state == State.DONE) {
            return;
        }
        if (state == State.CLOSED) {
            complete();
            return;
        }
        String where;
        if (decoder.partialHeaderBytes() > 0) {
            where = "inside a header after " + decoder.partialHeaderBytes() + " of " + PageServerWire.HEADER_BYTES
                    + " bytes";
        } else if (decoder.payloadRemaining() > 0) {
            where = "with payload_missing=" + decoder.payloadRemaining() + " bytes of \"" + lastHeader + "\"";
        } else {
            where = "before CLOSE";
        }
        fail("client closed the connection " + where + " received=" + bytesReceived
                + " (the dump was interrupted; nothing kept)");
    }

    /**
     * No data for the idle timeout. After CLOSE was answered the dump is complete even if the
     * client keeps the connection open; before, the session fails.
     *
     * @return true if the session ended (the connection should be closed)
     */
    synchronized boolean onIdle(long idleMillis) {
        if (state == State.CLOSED) {
            complete();
            return true;
        }
        if (state == State.ACTIVE) {
            fail("idle timeout: no data for idle_timeout_ms=" + idleMillis + " received=" + bytesReceived
                    + " (a stalled client; nothing kept)");
            return true;
        }
        return false;
    }

    /** Ends the session without a visible directory; idempotent. */
    synchronized void fail(String reason) {
        if (state == State.DONE) {
            return;
        }
        String cleanup = "";
        if (writer != null) {
            try {
                if (writer.isCommitted()) {
                    ImageDirectoryWriter.deleteRecursively(writer.directory());
                } else {
                    writer.abort();
                }
            } catch (IOException | RuntimeException e) {
                cleanup = " cleanup_failed=\"" + e.getMessage() + "\"";
            }
        }
        state = State.DONE;
        events.accept(new SessionEvent.Failed(id, remote, reason + cleanup));
    }

    private void complete() {
        Optional<Path> dir = Optional.empty();
        if (writer != null) {
            try {
                dir = Optional.of(SessionDirectories.publish(config, writer.directory(), sessionDirName()));
                sessions.completed(dir.get());
            } catch (IOException | RuntimeException e) {
                fail("cannot publish the session directory: dir=" + writer.directory() + " cause=\"" + e + "\"");
                return;
            }
        }
        state = State.DONE;
        long pages = writer != null ? writer.pages() : 0;
        long entries = writer != null ? writer.entries() : 0;
        events.accept(new SessionEvent.Completed(id, remote, dir, pages, bytesReceived, entries));
    }

    /** The visible name: the template with {pid}, {time} and {seq} filled in. */
    String sessionDirName() {
        String pid = firstTaskId != 0 ? Long.toString(firstTaskId) : "nopid";
        return config.sessionName(pid, started, id);
    }

    private Path incomingDir() {
        return config.directory().resolve(".incoming-" + id);
    }

    private SessionFailure failure(String reason) {
        return new SessionFailure(reason);
    }

    private static ByteBuffer intReply(int value) {
        return ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(0, value);
    }

}
