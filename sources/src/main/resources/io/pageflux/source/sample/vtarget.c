/*
 * pageflux's sample target: a process with a known memory layout, the same as the CRIU vectors'
 * (shared/vectors/criu-4.2-small/README.md), plus optional bulk memory for benchmarks.
 *
 *   A = 64 pages private anonymous; byte i = ((i / 4096) * 7 + (i % 251)) & 0xff
 *   B = 32 pages private anonymous; even pages filled with 0xA0 + page index, odd pages only read
 *       (they map the shared zero page and must not be dumped)
 *   C = 16 pages filled with 0x5C, then PROT_NONE
 *   D = 8 pages shared anonymous filled with 0xD5
 *   E = 8 pages reserved, never touched
 *   X = --bulk-mib N: N MiB private anonymous, every page touched; page p holds the 64-bit words
 *       (p * 0x9E3779B97F4A7C15 + w) for w = 0..511 (compressible it is not; realistic it is not either)
 *       With --bulk-from FILE, X holds FILE's bytes instead (read once, from its start; when FILE ends
 *       before X is full, what was read is repeated): realistic content for compression benchmarks,
 *       e.g. a FIFO fed with `tar -cf - /usr/share /usr/lib` (text, binaries, compressed files)
 *   S = --sparse-mib N: N MiB reserved (MAP_NORESERVE), one page in every 100 touched (filled with
 *       0x5A): a sparse address space for scanner benchmarks
 *
 * Threads (for the freezer's tests; none by default, so the layout above is all there is):
 *   --threads N  N worker threads that keep incrementing a counter of their own (in .bss)
 *   --spawn      one more thread that creates short-lived threads in a loop, so threads appear and
 *                vanish while the target is being frozen
 *
 * Prints one line "A=0x... B=0x... C=0x... D=0x... E=0x... X=0x... XPAGES=n S=0x... SPAGES=n" on stdout,
 * then waits.
 * Signals:
 *   SIGUSR1  munmap A, then print "unmapped A" (tests of pages vanishing mid-read)
 *   SIGUSR2  rewrite every 4th page of X and of A's first half with a new generation, then print
 *            "rewrote N" (tests of incremental dumps)
 *   SIGTERM  exit 0
 * Commands on stdin:
 *   't'      the main thread creates one more long-lived worker and prints "spawned TID"
 * It also exits when its stdin reaches EOF, so a crashed parent never leaves it behind (pageflux starts it
 * with its stdin a pipe from the JVM, which the kernel closes when the JVM dies).
 * With --writer it keeps writing to X in a loop (a target that changes while being dumped).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>

#define PAGE 4096

static unsigned char *A, *B, *C, *D, *E, *X, *S;
static size_t x_pages, s_pages;
static volatile sig_atomic_t unmap_requested, rewrite_requested, stop_requested;
static uint64_t generation = 1;

#define MAX_WORKERS 64
static volatile uint64_t counters[(MAX_WORKERS + 1) * 512]; /* one page per worker, the last for short-lived ones */
static int worker_count;
static sem_t worker_started;
static volatile pid_t last_tid;

static void pause_us(long us) {
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

static void *worker(void *arg) {
    int slot = (int)(intptr_t)arg;
    last_tid = (pid_t)syscall(SYS_gettid);
    sem_post(&worker_started);
    for (;;) {
        counters[slot * 512]++;
        pause_us(200);
    }
    return NULL;
}

static void *short_lived(void *arg) {
    (void)arg;
    counters[MAX_WORKERS * 512]++;
    pause_us(300);
    return NULL;
}

static void *spawner(void *arg) {
    (void)arg;
    for (;;) {
        pthread_t t;
        if (pthread_create(&t, NULL, short_lived, NULL) == 0) pthread_detach(t);
        pause_us(100);
    }
    return NULL;
}

/* Starts one worker and waits until it runs; returns its tid (0 when MAX_WORKERS are running). */
static pid_t start_worker(void) {
    if (worker_count >= MAX_WORKERS) return 0;
    pthread_t t;
    if (pthread_create(&t, NULL, worker, (void *)(intptr_t)worker_count) != 0) { perror("pthread_create"); exit(3); }
    pthread_detach(t);
    worker_count++;
    sem_wait(&worker_started);
    return last_tid;
}

static void *map(size_t pages, int prot, int flags) {
    void *p = mmap(NULL, pages * PAGE, prot, flags, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(3); }
    return p;
}

static void on_signal(int sig) {
    if (sig == SIGUSR1) unmap_requested = 1;
    else if (sig == SIGUSR2) rewrite_requested = 1;
    else stop_requested = 1;
}

static void fill_x(uint64_t gen, size_t stride) {
    for (size_t p = 0; p < x_pages; p += stride) {
        uint64_t *w = (uint64_t *)(X + p * PAGE);
        for (int i = 0; i < PAGE / 8; i++) w[i] = (p * 0x9E3779B97F4A7C15ULL + i) ^ (gen << 56);
    }
}

/* Fills X from `path` (see the header); exits 3 naming the file when it cannot be read or is empty. */
static void fill_x_from(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { perror(path); exit(3); }
    size_t size = x_pages * PAGE, got = 0;
    while (got < size) {
        ssize_t n = read(fd, X + got, size - got);
        if (n < 0) { perror(path); exit(3); }
        if (n == 0) break;
        got += (size_t)n;
    }
    close(fd);
    if (got == 0) { fprintf(stderr, "vtarget: --bulk-from %s is empty\n", path); exit(3); }
    for (size_t at = got; at < size; at += got) memcpy(X + at, X, size - at < got ? size - at : got);
}

int main(int argc, char **argv) {
    size_t bulk_mib = 0;
    const char *bulk_from = NULL;
    int writer = 0, threads = 0, spawn = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bulk-mib") && i + 1 < argc) bulk_mib = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--sparse-mib") && i + 1 < argc) s_pages = strtoull(argv[++i], NULL, 10) * 256;
        else if (!strcmp(argv[i], "--bulk-from") && i + 1 < argc) bulk_from = argv[++i];
        else if (!strcmp(argv[i], "--writer")) writer = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--spawn")) spawn = 1;
        else {
            fprintf(stderr, "usage: vtarget [--bulk-mib N [--bulk-from FILE]] [--sparse-mib N] [--writer] [--threads N] [--spawn]\n");
            return 2;
        }
    }
    int anon = MAP_PRIVATE | MAP_ANONYMOUS;
    /* E first and guard gaps between the regions so the kernel does not merge them */
    E = map(8, PROT_READ | PROT_WRITE, anon);
    D = map(8, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS);
    C = map(16, PROT_READ | PROT_WRITE, anon);
    B = map(32, PROT_READ | PROT_WRITE, anon);
    A = map(64, PROT_READ | PROT_WRITE, anon);

    for (size_t i = 0; i < 64 * PAGE; i++) A[i] = (unsigned char)(((i / PAGE) * 7 + (i % 251)) & 0xff);
    volatile unsigned char sink = 0;
    for (int p = 0; p < 32; p++) {
        if (p % 2 == 0) memset(B + p * PAGE, 0xA0 + p, PAGE);
        else sink ^= B[p * PAGE];
    }
    memset(C, 0x5C, 16 * PAGE);
    if (mprotect(C, 16 * PAGE, PROT_NONE)) { perror("mprotect"); return 3; }
    memset(D, 0xD5, 8 * PAGE);

    if (bulk_mib) {
        x_pages = bulk_mib * 256;
        X = map(x_pages, PROT_READ | PROT_WRITE, anon);
        if (bulk_from) fill_x_from(bulk_from);
        else fill_x(0, 1);
    }

    if (s_pages) {
        S = map(s_pages, PROT_READ | PROT_WRITE, anon | MAP_NORESERVE);
        for (size_t p = 0; p < s_pages; p += 100) memset(S + p * PAGE, 0x5A, PAGE);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* The signals stay blocked except inside ppoll below, so the main thread sleeps there until a signal
     * or stdin wakes it (no lost wake-up between checking the flags and sleeping), and an idle sample
     * writes nothing to its memory: a timed poll loop would update the thread's descriptor (glibc's
     * cancellation state) on every wake-up, and a dump of the running sample would see that page change.
     * Worker threads inherit the mask, so the signals go to the main thread. */
    sigset_t handled, unblocked;
    sigemptyset(&handled);
    sigaddset(&handled, SIGUSR1);
    sigaddset(&handled, SIGUSR2);
    sigaddset(&handled, SIGTERM);
    sigprocmask(SIG_BLOCK, &handled, &unblocked);

    sem_init(&worker_started, 0, 0);
    for (int i = 0; i < threads; i++) start_worker();
    if (spawn) {
        pthread_t t;
        if (pthread_create(&t, NULL, spawner, NULL) != 0) { perror("pthread_create"); return 3; }
        pthread_detach(t);
    }

    printf("A=%p B=%p C=%p D=%p E=%p X=%p XPAGES=%zu S=%p SPAGES=%zu\n", (void *)A, (void *)B, (void *)C,
           (void *)D, (void *)E, (void *)X, x_pages, (void *)S, s_pages);
    fflush(stdout);

    while (!stop_requested) {
        if (unmap_requested) {
            unmap_requested = 0;
            munmap(A, 64 * PAGE);
            printf("unmapped A\n");
            fflush(stdout);
        }
        if (rewrite_requested) {
            rewrite_requested = 0;
            generation++;
            size_t n = 0;
            if (X) { fill_x(generation, 4); n += (x_pages + 3) / 4; }
            printf("rewrote %zu\n", n);
            fflush(stdout);
        }
        if (writer && X) {
            generation++;
            fill_x(generation, 64);
        }
        struct pollfd pfd = { .fd = 0, .events = POLLIN };
        struct timespec writer_pause = { 0, 1000000 };
        int r = ppoll(&pfd, 1, writer ? &writer_pause : NULL, &unblocked);
        if (r > 0) {
            char buf[64];
            ssize_t n = read(0, buf, sizeof buf);
            if (n <= 0) break; /* parent gone: stdin closed */
            for (ssize_t i = 0; i < n; i++) {
                if (buf[i] == 't') {
                    printf("spawned %d\n", (int)start_worker());
                    fflush(stdout);
                }
            }
        }
    }
    (void)sink;
    return 0;
}
