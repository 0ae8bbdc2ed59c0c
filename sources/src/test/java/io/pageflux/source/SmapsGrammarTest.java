package io.pageflux.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.Reader;
import java.io.StringReader;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * {@link Smaps}' hand-written scanner against the regular-expression parser it replaced
 * ({@link RegexSmapsParser}, kept in the tests as the reference): on the CRIU vectors and on thousands of
 * seeded mutations of real smaps text, both give equal regions or the same exception with the same message.
 */
class SmapsGrammarTest {

    /** Characters and strings the mutations insert: the grammar's own, whitespace of every kind, non-ASCII. */
    private static final String[] PIECES = {
            " ", "  ", "\t", "\u000B", "\f", "\r", "\n", "\r\n", "\u0085", "\u2028", "\u2029", "\u00a0", "\u2000",
            "\u3000", "\u0001", "\u001c", "0", "9", "a", "f", "g", "F", "k", "B", " kB", "kB", "-", ":", "_", "r",
            "w", "x", "p", "s", "S", "(", " (deleted)", "\u00e9", "\ud83d\ude00", "\ud83d", "\ude00", "V",
            "VmFlags:", "Rss:", "Foo_1:", "99999999999999999999", "9223372036854775807", "9223372036854775808",
            "18446744073709551615", "18446744073709551616", "00000000000000000000042", "1ffffffffffffffff",
            "ffffffffffffffff", "0000000000000000000abc", "00400000-00401000 rw-p 00000000 08:01 1 /x\n",
    };

    @Test
    void vectorsParseTheSame() throws Exception {
        String text = SmapsParserTest.resource("smaps.txt");
        assertSame(text);
        assertSame(text.replace("\n", "\r\n"));
        assertSame(text.replace("\n", "\r"));
        assertSame(text.replace("\n", "\n\n  \t\n"));
    }

    @Test
    void mutatedSmapsParsesTheSameOrFailsTheSame() throws Exception {
        List<String> lines = SmapsParserTest.resource("smaps.txt").lines().toList();
        String tricky = SmapsParserTest.trickyText();
        List<Integer> headers = java.util.stream.IntStream.range(0, lines.size())
                .filter(i -> !lines.get(i).contains(":") || lines.get(i).contains("-")).boxed().toList();
        Random random = new Random(20261126);
        int regionsSeen = 0;
        int errorsSeen = 0;
        for (int round = 0; round < 6000; round++) {
            String base;
            if (random.nextInt(4) == 0) {
                base = tricky;
            } else {
                // a window of real lines that starts at a VMA header (one every 25 lines or so)
                int from = headers.get(random.nextInt(headers.size()));
                int to = Math.min(lines.size(), from + 1 + random.nextInt(60));
                base = String.join("\n", lines.subList(from, to)) + "\n";
            }
            StringBuilder text = new StringBuilder(base);
            int mutations = 1 + random.nextInt(3);
            for (int m = 0; m < mutations && text.length() > 0; m++) {
                int at = random.nextInt(text.length());
                String piece = PIECES[random.nextInt(PIECES.length)];
                switch (random.nextInt(4)) {
                    case 0 -> text.replace(at, at + 1, piece);
                    case 1 -> text.insert(at, piece);
                    case 2 -> text.deleteCharAt(at);
                    default -> text.setLength(at);
                }
            }
            int n = round;
            Outcome expected = outcome(() -> RegexSmapsParser.parse(text.toString()));
            Outcome actual = outcome(() -> Smaps.parse(text.toString()));
            assertEquals(expected, actual, () -> "round=" + n + " text:\n" + text);
            if (expected.regions != null && !expected.regions.isEmpty()) {
                regionsSeen++;
            } else if (expected.regions == null) {
                errorsSeen++;
            }
        }
        // the mutations must exercise both outcomes, or this test proves little
        assertTrue(regionsSeen > 1000 && errorsSeen > 1000, "regions=" + regionsSeen + " errors=" + errorsSeen);
    }

    @Test
    void everyPieceAtEveryPositionOfOneVma() {
        String vma = "7fec1097e000-7fec10980000 rw-s 00000000 00:01 32     /dev/zero (deleted)\n"
                + "Rss:                   8 kB\n"
                + "THPeligible:    0\n"
                + "VmFlags: rd wr sh mr\n";
        for (int at = 0; at <= vma.length(); at++) {
            for (String piece : PIECES) {
                String inserted = vma.substring(0, at) + piece + vma.substring(at);
                assertEquals(outcome(() -> RegexSmapsParser.parse(inserted)), outcome(() -> Smaps.parse(inserted)),
                        inserted);
                if (at < vma.length()) {
                    String replaced = vma.substring(0, at) + piece + vma.substring(at + 1);
                    assertEquals(outcome(() -> RegexSmapsParser.parse(replaced)), outcome(() -> Smaps.parse(replaced)),
                            replaced);
                }
            }
        }
    }

    @Test
    void readsInAnyPiecesGiveTheSameLines() throws Exception {
        // CR at the end of one read and LF at the start of the next is one line end, not two
        String text = SmapsParserTest.resource("smaps.txt").replace("\n", "\r\n") + "\n\r\r\n";
        Random random = new Random(7);
        List<MemoryRegion> expected = RegexSmapsParser.parse(text);
        for (int round = 0; round < 20; round++) {
            assertEquals(expected, Smaps.parse(new Trickle(text, random), "text"));
        }
        // a line longer than the initial buffer (16 Ki chars) grows it
        String longPath = "/tmp/" + "x".repeat(40_000) + " (deleted)";
        String longLine = "00400000-00401000 rw-p 00000000 08:01 1 " + longPath + "\nRss: 4 kB\n";
        List<MemoryRegion> regions = Smaps.parse(new Trickle(longLine, random), "text");
        assertEquals(longPath, regions.get(0).path());
        assertEquals(4L, regions.get(0).fields().get("Rss"));
        assertEquals(RegexSmapsParser.parse(longLine), regions);
    }

    private static void assertSame(String text) {
        assertEquals(outcome(() -> RegexSmapsParser.parse(text)), outcome(() -> Smaps.parse(text)));
    }

    private static Outcome outcome(java.util.function.Supplier<List<MemoryRegion>> parse) {
        try {
            return new Outcome(parse.get(), null, null);
        } catch (RuntimeException e) {
            return new Outcome(null, e.getClass(), e.getMessage());
        }
    }

    private record Outcome(List<MemoryRegion> regions, Class<?> error, String message) {
    }

    /** A reader that hands out 1..17 chars per call, so lines and CR LF pairs straddle reads. */
    private static final class Trickle extends Reader {
        private final StringReader in;
        private final Random random;

        Trickle(String text, Random random) {
            this.in = new StringReader(text);
            this.random = random;
        }

        @Override
        public int read(char[] buf, int off, int len) throws IOException {
            return in.read(buf, off, Math.min(len, 1 + random.nextInt(17)));
        }

        @Override
        public void close() {
            in.close();
        }
    }
}
