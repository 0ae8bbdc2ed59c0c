/*
 * pageflux's multi-threaded test target (for the freezer's tests): worker threads that keep writing to
 * memory, and optionally a spawner thread that creates short-lived threads in a loop, so threads appear
 * and vanish while the target is being frozen.
 *
 *   usage: threads [--workers N] [--spawn]
 *
 * Prints "ready" on stdout, then waits.
 * Signals:
 *   SIGUSR1  the main thread creates one more long-lived worker and prints "spawned TID"
 *   SIGTERM  exit 0
 * It exits when its stdin reaches EOF, so a crashed parent never leaves it behind.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 64

static volatile sig_atomic_t spawn_requested, stop_requested;
static volatile uint64_t counters[MAX_WORKERS * 512]; /* one page per worker */
static volatile int worker_count;
static sem_t started;
static volatile pid_t last_tid;

static void on_signal(int sig) {
    if (sig == SIGUSR1) spawn_requested = 1;
    else stop_requested = 1;
}

static void pause_us(long us) {
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

static void *worker(void *arg) {
    int slot = (int)(intptr_t)arg;
    last_tid = (pid_t)syscall(SYS_gettid);
    sem_post(&started);
    for (;;) {
        counters[slot * 512]++;
        pause_us(200);
    }
    return NULL;
}

static void *short_lived(void *arg) {
    (void)arg;
    counters[MAX_WORKERS * 512 - 1]++;
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

static void start_worker(void) {
    if (worker_count >= MAX_WORKERS) return;
    pthread_t t;
    if (pthread_create(&t, NULL, worker, (void *)(intptr_t)worker_count) != 0) { perror("pthread_create"); exit(3); }
    pthread_detach(t);
    worker_count++;
    sem_wait(&started);
}

int main(int argc, char **argv) {
    int workers = 2, spawn = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--workers") && i + 1 < argc) workers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--spawn")) spawn = 1;
        else { fprintf(stderr, "usage: threads [--workers N] [--spawn]\n"); return 2; }
    }
    sem_init(&started, 0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    for (int i = 0; i < workers && i < MAX_WORKERS; i++) start_worker();
    if (spawn) {
        pthread_t t;
        if (pthread_create(&t, NULL, spawner, NULL) != 0) { perror("pthread_create"); return 3; }
        pthread_detach(t);
    }
    printf("ready\n");
    fflush(stdout);

    while (!stop_requested) {
        if (spawn_requested) {
            spawn_requested = 0;
            start_worker();
            printf("spawned %d\n", (int)last_tid);
            fflush(stdout);
        }
        struct pollfd pfd = { .fd = 0, .events = POLLIN };
        if (poll(&pfd, 1, 20) > 0) {
            char buf[64];
            if (read(0, buf, sizeof buf) <= 0) break; /* parent gone: stdin closed */
        }
    }
    return 0;
}
