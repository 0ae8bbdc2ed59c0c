package io.pageflux.source;

/**
 * Which pagemap a run belongs to: a task's ({@code pagemap-<pid>.img}) or a shared anonymous
 * object's ({@code pagemap-shmem-<shmid>.img}, addresses are offsets inside the object).
 * {@link #dstId()} is the page-server encoding {@code (id << 8) | type}.
 */
public record PagemapId(Kind kind, long id) {

    public enum Kind {
        TASK(1), SHMEM(2);

        private final int wireType;

        Kind(int wireType) {
            this.wireType = wireType;
        }

        public int wireType() {
            return wireType;
        }
    }

    public static PagemapId task(long pid) {
        return new PagemapId(Kind.TASK, pid);
    }

    public static PagemapId shmem(long shmid) {
        return new PagemapId(Kind.SHMEM, shmid);
    }

    public long dstId() {
        return (id << 8) | kind.wireType();
    }

    /** The pagemap's file name in an image directory. */
    public String pagemapFileName() {
        return kind == Kind.TASK ? "pagemap-" + id + ".img" : "pagemap-shmem-" + id + ".img";
    }

    // equals and hashCode written out: a record's generated ones are bootstrapped through
    // invokedynamic on first use, which costs milliseconds in a JVM that lives for one dump (the
    // page-server client keys its pagemaps by PagemapId before the first chunk is sent)
    @Override
    public boolean equals(Object o) {
        return o instanceof PagemapId p && p.id == id && p.kind == kind;
    }

    @Override
    public int hashCode() {
        return Long.hashCode(id) * 31 + kind.hashCode();
    }

    @Override
    public String toString() {
        return pagemapFileName();
    }
}
