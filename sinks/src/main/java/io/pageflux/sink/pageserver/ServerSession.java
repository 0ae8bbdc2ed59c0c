package io.pageflux.sink.pageserver;

import io.pageflux.sink.criu.ImageDirectoryWriter;
import io.pageflux.source.PageFlags;
import io.pageflux.source.PagemapId;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.util.HashSet;
import java.util.Optional;
import java.util.Set;
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

    /** A reason to end this session; never escapes the server. */
    static final class SessionFailure extends RuntimeException {
        SessionFailure(String reason) {
            super(reason, null, false, false);
        }
    }

    /** Where replies go (the connection). */
    interface Output {
        void reply(ByteBuffer bytes);
    }

    private enum State { ACTIVE, CLOSED, DONE }

    private final long id;
    private final String remote;
    private final Instant started;
    private final ServerConfig config;
    private final Output output;
    private final Consumer<SessionEvent> events;
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

    /** The PE_PRESENT run whose bytes are arriving. */
    private long runVaddr;
    private int runFlags;
    /** Holds a page split across reads; whole pages go to the writer straight from the socket's buffers. */
    private ByteBuffer carry;

    ServerSession(long id, String remote, Instant started, ServerConfig config, Output output,
                  Consumer<SessionEvent> events) {
        this.id = id;
        this.remote = remote;
        this.started = started;
        this.config = config;
        this.output = output;
        this.events = events;
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

    @Override
    public void onHeader(PageServerHeader h) {
        lastHeader = h;
        if (state != State.ACTIVE) {
            throw failure("data after CLOSE: header " + h);
        }
        int cmd = h.cmd();
        if (cmd == PageServerWire.CMD_CLOSE || cmd == PageServerWire.CMD_FORCE_CLOSE) {
            close();
            return;
        }
        switch (h.op()) {
            case PageServerWire.OP_PARENT -> output.reply(intReply(hasParent(pagemap(h)) ? 1 : 0));
            case PageServerWire.OP_OPEN -> open(pagemap(h));
            case PageServerWire.OP_OPEN2 -> {
                PagemapId pm = pagemap(h);
                open(pm);
                output.reply(ByteBuffer.wrap(new byte[] {(byte) (hasParent(pm) ? 1 : 0)}));
            }
            case PageServerWire.OP_ADD_F -> run(h, h.flags());
            case PageServerWire.OP_ADD -> run(h, PageFlags.PE_PRESENT);
            case PageServerWire.OP_HOLE -> run(h, PageFlags.PE_PARENT);
            case PageServerWire.OP_GET -> throw failure("GET (lazy restore) is not served by pageflux's page server"
                    + " header=\"" + h + "\": serve lazy pages with criu lazy-pages");
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
        if (n <= 0 || n > config.maxPagesPerHeader()) {
            throw failure("nr_pages=" + Long.toUnsignedString(n) + " outside 1.." + config.maxPagesPerHeader()
                    + " header=\"" + h + "\" (max_pages_per_header; raise --max-header-pages if such runs are expected)");
        }
        long v = h.vaddr();
        if (v % pageSize != 0 || Long.compareUnsigned(v, -1L - n * pageSize) > 0) {
            throw failure("vaddr=0x" + Long.toHexString(v) + " is not page aligned or the run wraps around"
                    + " header=\"" + h + "\"");
        }
        long payload = h.payloadBytes(pageSize);
        if (payload > config.maxBytesPerSession() - bytesReceived) {
            throw failure("run would exceed max_bytes_per_session=" + config.maxBytesPerSession() + " received="
                    + bytesReceived + " announced=" + payload + " header=\"" + h + "\"");
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

    private PagemapId pagemap(PageServerHeader h) {
        try {
            return PageServerWire.pagemapOf(h.dstId());
        } catch (IllegalArgumentException e) {
            throw failure(e.getMessage() + " header=\"" + h + "\"");
        }
    }

    private boolean hasParent(PagemapId pm) {
        return config.parentImages()
                .map(dir -> Files.isRegularFile(dir.resolve(pm.pagemapFileName())))
                .orElse(false);
    }

    private void open(PagemapId pm) {
        if (writer == null) {
            ImageDirectoryWriter.Options options = ImageDirectoryWriter.Options.defaults()
                    .withFirstPagesId(ImageDirectoryWriter.Options.PAGE_SERVER_FIRST_PAGES_ID);
            if (config.parentLink().isPresent()) {
                options = options.withParentLink(config.parentLink().get());
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

    /** Commits to the hidden name, then answers 0: the answer means the pages are durable. */
    private void close() {
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
        output.reply(intReply(0));
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
                dir = Optional.of(publish(writer.directory()));
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

    /** Renames the committed hidden directory to its visible, unique name and syncs DIR. */
    private Path publish(Path incoming) throws IOException {
        String base = sessionDirName();
        Path target = config.directory().resolve(base);
        for (int n = 2; Files.exists(target, LinkOption.NOFOLLOW_LINKS); n++) {
            target = config.directory().resolve(base + "-" + n);
        }
        ServerConfig.checkInside(config.directory(), target);
        Files.move(incoming, target, StandardCopyOption.ATOMIC_MOVE);
        try (FileChannel d = FileChannel.open(config.directory(), StandardOpenOption.READ)) {
            d.force(true);
        }
        return target;
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
