package io.pageflux.sink.pageserver;

import io.pageflux.source.PageFlags;
import io.pageflux.source.PageRun;
import io.pageflux.source.PagemapId;

/**
 * What a client makes of the page server's answers, shared by both clients ({@link BlockingClientSession} on
 * plain TCP, {@link ClientSession} on Netty/TLS), so that the two report the same errors in the same words.
 */
final class ClientReplies {

    private ClientReplies() {
    }

    /** A PARENT or OPEN2 answer: 1 (has a parent) or 0; anything else means the peer is not a page server. */
    static boolean booleanReply(String server, int value, String command, PagemapId pagemap) {
        if (value != 0 && value != 1) {
            throw new PageServerException("page server gave a wrong reply: server=" + server + " command=" + command
                    + " pagemap=" + pagemap + " reply=" + value + " expected=0|1; it is not a CRIU page server"
                    + " or a broken one: check host and port");
        }
        return value == 1;
    }

    /** CLOSE's answer: 0 when the server stored the images. */
    static void closeReply(String server, int value) {
        if (value != 0) {
            throw new PageServerException("page server refused to complete the dump: server=" + server
                    + " command=CLOSE reply=" + value + " expected=0; it could not store the images:"
                    + " check its log (disk space, permissions)");
        }
    }

    /** A run of holes to be found in the parent (PE_PARENT) needs a server that said it has parent images. */
    static void checkParentHoles(String server, PageRun run, boolean serverHasParent) {
        if (PageFlags.has(run.flags(), PageFlags.PE_PARENT) && !serverHasParent) {
            throw new PageServerException("page server has no parent images for the dump's holes: server=" + server
                    + " pagemap=" + run.pagemap() + " vaddr=0x" + Long.toHexString(run.pagemapVaddr())
                    + " (OPEN2 answered 0); start the server with --parent-images pointing at the previous dump,"
                    + " or dump without a parent");
        }
    }
}
