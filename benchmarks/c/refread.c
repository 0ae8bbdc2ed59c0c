/*
 * Reference readers for pageflux's whole-process benchmark: the same pages, read the plain C way,
 * so pageflux's numbers have a baseline measured in the same run on the same target.
 *
 *   refread vm   PID [CHUNK_MIB]          process_vm_readv, one 4 MiB buffer, one call per chunk
 *   refread mem  PID [CHUNK_MIB]          pread(/proc/PID/mem) in chunks
 *   refread copy PID FILE [CHUNK_MIB]     process_vm_readv + write(2) to FILE (then fsync)
 *   refread copy-direct PID FILE [CHUNK_MIB]  the same with FILE opened O_DIRECT (the page-aligned
 *                                         buffer and whole-page lengths are what O_DIRECT needs)
 *   refread pipe PID [CHUNK_MIB]          process_vm_readv + write(2) to stdout (for `| zstd`, `| lz4`)
 *   refread smaps PID [CHUNK_MIB]         like vm, after reading /proc/PID/smaps once (timed): the region
 *                                         metadata pageflux (and CRIU) read to apply CRIU's rules, whose
 *                                         kernel-side page-table walk costs ~13 ms per GiB resident
 *
 * It reads every private, readable, anonymous or written region of /proc/PID/maps — the bulk of a
 * benchmark target — and prints: "bytes=N seconds=S gibps=G" (on stderr in pipe mode).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: refread vm|mem|smaps|pipe PID [CHUNK_MIB] | refread copy|copy-direct PID FILE [CHUNK_MIB]\n");
        return 2;
    }
    const char *mode = argv[1];
    pid_t pid = atoi(argv[2]);
    int direct = !strcmp(mode, "copy-direct");
    int copy = !strcmp(mode, "copy") || direct;
    int to_stdout = !strcmp(mode, "pipe");
    const char *out_path = copy ? argv[3] : NULL;
    int chunk_arg = copy ? 4 : 3;
    size_t chunk = (argc > chunk_arg ? strtoull(argv[chunk_arg], NULL, 10) : 4) << 20;

    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *maps = fopen(path, "r");
    if (!maps) { perror(path); return 1; }
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int mem = open(path, O_RDONLY);
    if (mem < 0) { perror(path); return 1; }
    int out = -1;
    if (copy) {
        out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | (direct ? O_DIRECT : 0), 0644);
        if (out < 0) { perror(out_path); return 1; }
    }
    if (to_stdout) out = STDOUT_FILENO;
    char *buf = aligned_alloc(4096, chunk);
    memset(buf, 0, chunk);

    unsigned long long total = 0;
    char line[512];
    double start = now();
    if (!strcmp(mode, "smaps")) {
        snprintf(path, sizeof path, "/proc/%d/smaps", pid);
        FILE *smaps = fopen(path, "r");
        if (!smaps) { perror(path); return 1; }
        while (fgets(line, sizeof line, smaps)) { }
        fclose(smaps);
    }
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char perms[5];
        unsigned long long inode;
        char dev[16];
        unsigned long off;
        char name[256] = "";
        if (sscanf(line, "%lx-%lx %4s %lx %15s %llu %255[^\n]", &lo, &hi, perms, &off, dev, &inode, name) < 6) continue;
        if (perms[0] != 'r' || perms[3] != 'p') continue;
        if (inode != 0 || strstr(name, "[vvar") || strstr(name, "[vsyscall]")) continue;
        for (unsigned long a = lo; a < hi; a += chunk) {
            size_t len = hi - a < chunk ? hi - a : chunk;
            ssize_t n;
            if (!strcmp(mode, "mem")) {
                n = pread(mem, buf, len, (off_t)a);
            } else {
                struct iovec local = { buf, len }, remote = { (void *)a, len };
                n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
            }
            if (n < 0) { perror("read"); break; }
            total += (unsigned long long)n;
            for (ssize_t done = 0; out >= 0 && done < n;) { /* a pipe takes partial writes */
                ssize_t w = write(out, buf + done, (size_t)(n - done));
                if (w < 0) { perror("write"); return 1; }
                done += w;
            }
        }
    }
    if (copy) fsync(out);
    double secs = now() - start;
    fprintf(to_stdout ? stderr : stdout, "bytes=%llu seconds=%.4f gibps=%.3f\n", total, secs,
            total / secs / (1024.0 * 1024 * 1024));
    return 0;
}
