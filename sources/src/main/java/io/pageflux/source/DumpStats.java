package io.pageflux.source;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/**
 * Live counters of one dump, updated by the source as it scans and reads, readable from any thread
 * (progress bars, reports, tests).
 */
public final class DumpStats {

    /** How many vanished page addresses are remembered for the report. */
    public static final int VANISHED_ADDRESSES_KEPT = 64;

    private final LongAdder regionsSeen = new LongAdder();
    private final LongAdder regionsDumped = new LongAdder();
    private final Map<String, LongAdder> regionsSkipped = new ConcurrentHashMap<>();
    private final AtomicLong pagesPlanned = new AtomicLong();
    private final LongAdder runs = new LongAdder();
    private final LongAdder pagesRead = new LongAdder();
    private final LongAdder chunksRead = new LongAdder();
    private final LongAdder pagesVanished = new LongAdder();
    private final List<Long> vanishedAddresses = new ArrayList<>();

    public void regionSeen() {
        regionsSeen.increment();
    }

    public void regionDumped() {
        regionsDumped.increment();
    }

    public void regionSkipped(String reason) {
        regionsSkipped.computeIfAbsent(reason, r -> new LongAdder()).increment();
    }

    /** Pages the scan selected, known before they are read (the progress total). */
    public void addPlannedPages(long pages) {
        pagesPlanned.addAndGet(pages);
    }

    public void runScanned() {
        runs.increment();
    }

    public void chunkRead(long pages) {
        chunksRead.increment();
        pagesRead.add(pages);
    }

    /** A selected page that could not be read any more (unmapped or made unreadable meanwhile). */
    public void pageVanished(long address) {
        pagesVanished.increment();
        synchronized (vanishedAddresses) {
            if (vanishedAddresses.size() < VANISHED_ADDRESSES_KEPT) {
                vanishedAddresses.add(address);
            }
        }
    }

    public long regionsSeen() {
        return regionsSeen.sum();
    }

    public long regionsDumped() {
        return regionsDumped.sum();
    }

    /** Skipped regions by the policy's reason, sorted by reason. */
    public Map<String, Long> regionsSkipped() {
        Map<String, Long> out = new TreeMap<>();
        regionsSkipped.forEach((k, v) -> out.put(k, v.sum()));
        return out;
    }

    public long pagesPlanned() {
        return pagesPlanned.get();
    }

    public long runs() {
        return runs.sum();
    }

    public long pagesRead() {
        return pagesRead.sum();
    }

    public long bytesRead() {
        return pagesRead.sum() * PageRun.PAGE_SIZE;
    }

    public long chunksRead() {
        return chunksRead.sum();
    }

    public long pagesVanished() {
        return pagesVanished.sum();
    }

    /** The first {@value #VANISHED_ADDRESSES_KEPT} vanished page addresses. */
    public List<Long> vanishedAddresses() {
        synchronized (vanishedAddresses) {
            return List.copyOf(vanishedAddresses);
        }
    }
}
