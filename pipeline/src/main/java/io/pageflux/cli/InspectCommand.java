package io.pageflux.cli;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.pageflux.sink.compress.PageImages;
import io.pageflux.sink.criu.ImageDirectory;
import io.pageflux.sink.criu.ImageFormatException;
import io.pageflux.sink.criu.InventoryImage;
import io.pageflux.sink.criu.PagemapImage;
import io.pageflux.source.DataSize;
import io.pageflux.source.PageFlags;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code pageflux inspect DIR}: the pagemaps of an image directory, like {@code crit show}, and a data check. */
@Command(name = "inspect",
        mixinStandardHelpOptions = true,
        header = "Show and check the pagemaps of an image directory.",
        description = {
                "Show the pagemap entries and totals of a CRIU image directory (pageflux's or CRIU's own), "
                        + "like `crit show pagemap-*.img`, and check that every entry's bytes are in its pages "
                        + "file."},
        footerHeading = "%nExamples:%n",
        footer = {"  pageflux inspect /tmp/d1", "  pageflux inspect /tmp/d1 --json | jq .totals", ""},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {
                "0:the directory is consistent",
                "2:not an image directory, or a damaged file (the message names the file and byte offset)"})
final class InspectCommand implements Callable<Integer> {

    @Spec
    CommandLine.Model.CommandSpec spec;

    @Parameters(paramLabel = "DIR", description = "The image directory.")
    Path dir;

    @Option(names = "--json", description = "Print the entries and totals as JSON on stdout.")
    boolean json;

    @Override
    public Integer call() {
        ImageDirectory images = open(dir);
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            out.println(json(images).toPrettyString());
        } else {
            out.print(text(images));
        }
        out.flush();
        return ExitCodes.OK;
    }

    /** Opens and verifies {@code dir}; every way it can be wrong is bad input (exit 2). */
    static ImageDirectory open(Path dir) {
        try {
            ImageDirectory images = ImageDirectory.open(dir);
            if (images.pagemaps().isEmpty()) {
                throw CliException.badInput("dir=" + dir + " holds no pagemap-*.img file: not an image directory "
                        + "(inspect the directory a dump wrote, e.g. pageflux inspect /tmp/d1)");
            }
            // PageImages checks plain pages files and compressed ones (every frame's checksum) alike
            try (PageImages pages = PageImages.open(dir)) {
                pages.verify();
            }
            return images;
        } catch (ImageFormatException e) {
            throw CliException.badInput(e.getMessage(), e);
        } catch (NoSuchFileException e) {
            throw CliException.badInput("dir=" + dir + " does not exist: give the directory a dump wrote", e);
        } catch (NotDirectoryException e) {
            throw CliException.badInput("dir=" + dir + " is not a directory: give the directory a dump wrote, "
                    + "not one of its files", e);
        } catch (IOException e) {
            throw CliException.badInput("cannot read dir=" + dir + ": " + OutputDirs.reason(e), e);
        }
    }

    static String text(ImageDirectory images) {
        StringBuilder sb = new StringBuilder();
        Path dir = images.path();
        sb.append(dir).append('\n');
        images.inventory().ifPresent(inv -> sb.append("  ").append(inventory(inv)).append('\n'));
        images.parentLink().ifPresent(p -> sb.append("  parent -> ").append(p).append('\n'));
        for (PagemapImage pm : images.pagemaps()) {
            sb.append(String.format(Locale.ROOT, "%s  pages_id=%d  data=%s%n", pm.file().getFileName(), pm.pagesId(),
                    pm.pagesFileName()));
            sb.append(String.format(Locale.ROOT, "  %5s  %-18s  %9s  %-22s  %s%n", "entry", "vaddr", "nr_pages",
                    "flags", "offset in " + pm.pagesFileName()));
            for (PagemapImage.Entry e : pm.entries()) {
                sb.append(String.format(Locale.ROOT, "  %5d  0x%-16x  %9d  %-22s  %s%n", e.index(), e.vaddr(),
                        e.nrPages(), PageFlags.describe(e.flags()), e.present() ? Long.toString(e.pagesOffset()) : "-"));
            }
            sb.append(String.format(Locale.ROOT, "  %d entries, %d pages: %d present (%s), %d in parent, %d lazy%n",
                    pm.entries().size(), totalPages(pm), pm.presentPages(), DataSize.format(pm.expectedPagesBytes()),
                    pm.parentPages(), lazyPages(pm)));
        }
        sb.append(String.format(Locale.ROOT, "total: %d pagemaps, %d entries, %d present pages (%s), %d pages in parent%n",
                images.pagemaps().size(), images.entries(), images.presentPages(), DataSize.format(images.pagesBytes()),
                images.parentPages()));
        sb.append("check: OK, every present entry's bytes are in its pages file\n");
        return sb.toString();
    }

    static ObjectNode json(ImageDirectory images) {
        ObjectNode root = Reports.JSON.createObjectNode();
        root.put("dir", images.path().toString());
        images.inventory().ifPresent(inv -> {
            ObjectNode n = root.putObject("inventory");
            n.put("imgVersion", inv.imgVersion());
            inv.dumpUptime().ifPresent(u -> n.put("dumpUptime", u));
            inv.preDumpMode().ifPresent(m -> n.put("preDumpMode", m));
        });
        images.parentLink().ifPresent(p -> root.put("parent", p.toString()));
        ArrayNode pagemaps = root.putArray("pagemaps");
        for (PagemapImage pm : images.pagemaps()) {
            ObjectNode n = pagemaps.addObject();
            n.put("file", pm.file().getFileName().toString());
            n.put("pagesId", pm.pagesId());
            n.put("pagesFile", pm.pagesFileName());
            ArrayNode entries = n.putArray("entries");
            for (PagemapImage.Entry e : pm.entries()) {
                ObjectNode en = entries.addObject();
                en.put("vaddr", "0x" + Long.toHexString(e.vaddr()));
                en.put("nrPages", e.nrPages());
                en.put("flags", PageFlags.describe(e.flags()));
                if (e.present()) {
                    en.put("pagesOffset", e.pagesOffset());
                }
            }
            n.put("presentPages", pm.presentPages());
            n.put("parentPages", pm.parentPages());
        }
        ObjectNode totals = root.putObject("totals");
        totals.put("pagemaps", images.pagemaps().size());
        totals.put("entries", images.entries());
        totals.put("presentPages", images.presentPages());
        totals.put("parentPages", images.parentPages());
        totals.put("pagesBytes", images.pagesBytes());
        root.put("verified", true);
        return root;
    }

    private static long totalPages(PagemapImage pm) {
        return pm.entries().stream().mapToLong(PagemapImage.Entry::nrPages).sum();
    }

    private static long lazyPages(PagemapImage pm) {
        return pm.entries().stream().filter(PagemapImage.Entry::lazy).mapToLong(PagemapImage.Entry::nrPages).sum();
    }

    private static String inventory(InventoryImage inv) {
        StringBuilder sb = new StringBuilder(Files.exists(inv.file()) ? inv.file().getFileName().toString() : "inventory");
        sb.append("  img_version=").append(inv.imgVersion());
        inv.dumpUptime().ifPresent(u -> sb.append("  dump_uptime=").append(u));
        inv.preDumpMode().ifPresent(m -> sb.append("  pre_dump_mode=").append(m).append(m == 2 ? " (read)" : m == 1 ? " (splice)" : ""));
        return sb.toString();
    }
}
