package io.pageflux.sink.pageserver;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.PagemapImage;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/** Compares a local dump with what the page server received. */
final class ImageCompare {

    private ImageCompare() {
    }

    /**
     * Same pagemaps with the same entries, byte-identical pagemap files except the head's pages_id
     * (local counts from 1, a page server from 65537) and byte-identical pages files.
     */
    static void assertSameExceptPagesIds(Path local, Path received) throws IOException {
        ImageDirectory l = ImageDirectory.open(local);
        ImageDirectory r = ImageDirectory.open(received);
        assertEquals(l.pagemaps().stream().map(PagemapImage::id).toList(),
                r.pagemaps().stream().map(PagemapImage::id).sorted(java.util.Comparator.comparing(
                        id -> l.pagemaps().stream().map(PagemapImage::id).toList().indexOf(id))).toList());
        assertEquals(l.pagemaps().size(), r.pagemaps().size());
        for (PagemapImage lp : l.pagemaps()) {
            PagemapImage rp = r.pagemap(lp.id()).orElseThrow(() -> new AssertionError("not received: " + lp.id()));
            assertEquals(lp.pagesId() + 0x10000, rp.pagesId(), lp.id() + ": pages_id 1.. locally, 65537.. received");
            assertEquals(PageServerReplayTest.runs(lp), PageServerReplayTest.runs(rp), lp.id() + " entries");
            assertArrayEquals(afterHead(local.resolve(lp.id().pagemapFileName())),
                    afterHead(received.resolve(rp.id().pagemapFileName())), lp.id() + ": entry bytes");
            assertArrayEquals(Files.readAllBytes(local.resolve(lp.pagesFileName())),
                    Files.readAllBytes(received.resolve(rp.pagesFileName())), lp.id() + ": page bytes");
        }
    }

    /** The pagemap file without the two magics and the head message (which holds the pages_id). */
    static byte[] afterHead(Path pagemap) throws IOException {
        byte[] all = Files.readAllBytes(pagemap);
        int headLength = ByteBuffer.wrap(all, 8, 4).order(ByteOrder.LITTLE_ENDIAN).getInt();
        return Arrays.copyOfRange(all, 12 + headLength, all.length);
    }
}
