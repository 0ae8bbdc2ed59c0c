#!/usr/bin/env bash
# Compression benchmark: pageflux's compressed dumps beside a C reader piped into the zstd/lz4
# command-line tools, on one target with realistic memory, in one invocation.
#
#   benchmarks/compress.sh [--gib N] [--runs 2] [--budget 64M] [--corpus "usr/share usr/lib"] [--out DIR]
#                          [--methods pf-raw,pf-lz4,pf-zstd1,pf-zstd3,c-raw,c-lz4,c-zstd1,c-zstd3,...]
#                          [--disk-limit RATE]
#
# Needs: gcc, tar, python3 and the CLIs `zstd` and `lz4` (Debian:
# apt-get install -y zstd lz4); root or CAP_SYS_PTRACE. Run it on a quiet machine (on the shared
# development machine: flock -x /tmp/pf.lock benchmarks/compress.sh).
#
# The target is the sample process (vtarget) with N GiB of private anonymous memory filled from a
# corpus: `tar -cf - -C / $corpus` (default /usr/share, then /usr/lib: text, documentation,
# locales, shared libraries, executables, already-compressed files), cut at N GiB. Then, each
# --runs times, in this order, every output going to the same local disk (--out, default /var/tmp):
#   pf-raw     pageflux dump --out DIR                        (CRIU images, fsynced; O_DIRECT pages files)
#   pf-raw-pc  pageflux dump --out DIR --no-direct-io         (the same through the page cache)
#   pf-lz4     pageflux dump --out DIR --compress lz4
#   pf-zstd1   pageflux dump --out DIR --compress zstd:1
#   pf-zstd3   pageflux dump --out DIR --compress zstd:3
#   c-raw      refread copy PID FILE                          (process_vm_readv + write + fsync)
#   c-lz4      refread pipe PID | lz4 -1 > FILE; sync FILE
#   c-zstd1    refread pipe PID | zstd -T2 -1 > FILE; sync FILE
#   c-zstd3    refread pipe PID | zstd -T2 -3 > FILE; sync FILE
#   c-raw-direct  refread copy-direct PID FILE                (process_vm_readv + O_DIRECT write + fsync)
#   c-lz4-direct, c-zstd1-direct, c-zstd3-direct: the compressed pipelines into
#              `dd of=FILE bs=1M iflag=fullblock oflag=direct` (O_DIRECT, as pageflux writes
#              pages files; dd writes the last partial block without it); then sync FILE
# The previous output is deleted before each run; caches are not dropped (the machine may not
# allow it), so every time ends with the output fsynced: pageflux fsyncs every file and the
# directory before it renames it into place, the C pipelines end with `sync FILE` (fsync).
#
# --disk-limit RATE (e.g. 400M: bytes per second, K/M/G = 1024-based) emulates a slower disk: every
# method runs in a cgroup whose writes to the output's disk are throttled to RATE (cgroup v2 io.max
# wbps, or v1 blkio.throttle.write_bps_device). A v1 throttle only sees direct I/O (buffered writeback
# is issued by the kernel's flusher, outside the cgroup; v2 attributes it only with the memory controller
# on too), so with --disk-limit the default methods are
# the O_DIRECT ones: pf-raw, pf-lz4, pf-zstd1, pf-zstd3 (pageflux writes pages files with O_DIRECT)
# and c-raw-direct, c-lz4-direct, c-zstd1-direct, c-zstd3-direct. Needs root.
#
# Reported per method (best = shortest wall time of the runs): wall time from launch to the data
# on disk (for pageflux this includes JVM start-up, ~0.3 s; its own report's duration, without
# start-up, is shown beside it), output size, ratio = raw bytes / output bytes, and GiB/s = raw
# bytes / wall time. Raw bytes are each reader's own count (pageflux skips zero pages, refread
# reads whole regions; the bulk of both is the N GiB).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
gib=2 runs=2 budget=64M corpus="usr/share usr/lib" outdir=/var/tmp
all_methods=pf-raw,pf-raw-pc,pf-lz4,pf-zstd1,pf-zstd3,c-raw,c-lz4,c-zstd1,c-zstd3,c-raw-direct,c-lz4-direct,c-zstd1-direct,c-zstd3-direct
direct_methods=pf-raw,pf-lz4,pf-zstd1,pf-zstd3,c-raw-direct,c-lz4-direct,c-zstd1-direct,c-zstd3-direct
selected="" disk_limit=""
while [ $# -gt 0 ]; do
  case "$1" in
    --gib) gib="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --corpus) corpus="$2"; shift 2 ;;
    --out) outdir="$2"; shift 2 ;;
    --methods) selected="$2"; shift 2 ;;
    --disk-limit) disk_limit="$2"; shift 2 ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
if [ -z "$selected" ]; then
  if [ -n "$disk_limit" ]; then selected=$direct_methods; else selected=$all_methods; fi
fi
for tool in gcc tar python3 zstd lz4; do
  command -v "$tool" >/dev/null || { echo "compress.sh needs $tool (apt-get install -y zstd lz4 gcc tar python3)" >&2; exit 2; }
done

work="$(mktemp -d "$outdir/pageflux-cbench.XXXXXX")"
target_pid="" holder="" feeder="" limit_cgroup="" original_cgroup=""
cleanup() {
  if [ -n "$limit_cgroup" ]; then
    # back to the cgroup this shell came from; end what still runs in ours (e.g. a dump cut off by a
    # signal), then remove it
    echo $$ > "$original_cgroup/cgroup.procs" 2>/dev/null || true
    for pid in $(cat "$limit_cgroup/cgroup.procs" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 50); do rmdir "$limit_cgroup" 2>/dev/null && break; sleep 0.1; done
    [ -d "$limit_cgroup" ] && echo "compress.sh: could not remove $limit_cgroup (still busy)" >&2
  fi
  [ -n "$target_pid" ] && kill "$target_pid" 2>/dev/null || true
  [ -n "$holder" ] && kill "$holder" 2>/dev/null || true
  [ -n "$feeder" ] && kill "$feeder" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -o "$work/refread" "$here/c/refread.c"
gcc -O2 -o "$work/vtarget" "$root/sources/src/main/resources/io/pageflux/source/sample/vtarget.c"
"$root/pageflux" --version >/dev/null   # builds on first use

# The target: stdin is a pipe we hold open (it exits when the pipe closes); X is filled from the corpus.
mkfifo "$work/target.in" "$work/corpus"
sleep infinity > "$work/target.in" &
holder=$!
# vtarget closes the FIFO once X is full, which ends tar with SIGPIPE: expected, hence `|| true`
(tar -cf - -C / $corpus 2>/dev/null > "$work/corpus" || true) &
feeder=$!
"$work/vtarget" --bulk-mib $((gib * 1024)) --bulk-from "$work/corpus" < "$work/target.in" > "$work/target.out" &
target_pid=$!
for _ in $(seq 1 3000); do [ -s "$work/target.out" ] && break; sleep 0.1; done
[ -s "$work/target.out" ] || { echo "the target did not start (corpus: $corpus)" >&2; exit 1; }
wait "$feeder" 2>/dev/null || true
feeder=""
echo "target pid=$target_pid: ${gib} GiB filled from 'tar -cf - -C / $corpus'; budget=$budget;" \
     "output on $(df --output=source "$work" | tail -n 1) ($work); best of $runs runs; $(nproc) cores"

# --disk-limit: this shell (and so every method it starts from now on) joins a cgroup whose writes to
# the output's disk are throttled.
limit_disk() { # RATE
  local rate dev parent majmin
  rate=$(numfmt --from=iec "$1") || { echo "--disk-limit $1: not a rate (e.g. 400M)" >&2; exit 2; }
  dev=$(df --output=source "$work" | tail -n 1)
  if [ "$(lsblk -dno TYPE "$dev" 2>/dev/null || true)" = part ]; then
    parent=$(lsblk -no PKNAME "$dev" 2>/dev/null | head -n 1 || true)
    [ -n "$parent" ] && dev="/dev/$parent"   # throttles apply to whole disks (or dm devices), not partitions
  fi
  majmin=$(lsblk -dno MAJ:MIN "$dev" 2>/dev/null | tr -d ' ' || true)
  [ -n "$majmin" ] || { echo "--disk-limit: cannot find the block device of $work (source $dev)" >&2; exit 2; }
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    grep -qw io /sys/fs/cgroup/cgroup.controllers \
      || { echo "--disk-limit: the cgroup v2 io controller is not available" >&2; exit 2; }
    echo +io > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
    original_cgroup=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)
    limit_cgroup=/sys/fs/cgroup/pageflux-disk-limit.$$
    mkdir "$limit_cgroup"
    echo "$majmin wbps=$rate" > "$limit_cgroup/io.max"
  elif [ -f /sys/fs/cgroup/blkio/blkio.throttle.write_bps_device ]; then
    original_cgroup=/sys/fs/cgroup/blkio$(sed -n 's/^[0-9]*:blkio://p' /proc/self/cgroup)
    limit_cgroup=/sys/fs/cgroup/blkio/pageflux-disk-limit.$$
    mkdir "$limit_cgroup"
    echo "$majmin $rate" > "$limit_cgroup/blkio.throttle.write_bps_device"
  else
    echo "--disk-limit: no cgroup io controller (v2 io.max or v1 blkio throttle) on this machine" >&2; exit 2
  fi
  echo $$ > "$limit_cgroup/cgroup.procs"
  echo "writes to $dev ($majmin) throttled to $1/s (cgroup $limit_cgroup)"
}
[ -n "$disk_limit" ] && limit_disk "$disk_limit"

now() { date +%s.%N; }
size_of() { du -sb "$1" | cut -f1; }

# Each measure_* prints "wall_seconds own_seconds raw_bytes output_bytes".
measure_pageflux() { # codec|raw|raw-pc
  local args=()
  case "$1" in
    raw) ;;
    raw-pc) args=(--no-direct-io) ;;
    *) args=(--compress "$1") ;;
  esac
  rm -rf "$work/out"
  local start end json
  start=$(now)
  json=$("$root/pageflux" dump --pid "$target_pid" --out "$work/out" --budget "$budget" --json --no-progress "${args[@]}")
  end=$(now)
  python3 - "$start" "$end" "$(size_of "$work/out")" "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[4])
start, end, size = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
print(f"{end - start:.3f} {r['durationMillis'] / 1000:.3f} {r['bytesDumped']} {size}")
PY
}

direct_to() { dd of="$1" bs=1M iflag=fullblock oflag=direct status=none; }

measure_c() { # raw | lz4 | zstd1 | zstd3, optionally with -direct
  rm -f "$work/c.out"
  local start end stats
  start=$(now)
  case "$1" in
    raw) stats=$("$work/refread" copy "$target_pid" "$work/c.out") ;;
    lz4) stats=$( { "$work/refread" pipe "$target_pid" | lz4 -1 -q > "$work/c.out"; } 2>&1 ) ;;
    zstd1) stats=$( { "$work/refread" pipe "$target_pid" | zstd -T2 -1 -q > "$work/c.out"; } 2>&1 ) ;;
    zstd3) stats=$( { "$work/refread" pipe "$target_pid" | zstd -T2 -3 -q > "$work/c.out"; } 2>&1 ) ;;
    raw-direct) stats=$("$work/refread" copy-direct "$target_pid" "$work/c.out") ;;
    lz4-direct) stats=$( { "$work/refread" pipe "$target_pid" | lz4 -1 -q | direct_to "$work/c.out"; } 2>&1 ) ;;
    zstd1-direct) stats=$( { "$work/refread" pipe "$target_pid" | zstd -T2 -1 -q | direct_to "$work/c.out"; } 2>&1 ) ;;
    zstd3-direct) stats=$( { "$work/refread" pipe "$target_pid" | zstd -T2 -3 -q | direct_to "$work/c.out"; } 2>&1 ) ;;
  esac
  sync "$work/c.out"   # fsync: the data is on the disk, as pageflux's is
  end=$(now)
  local bytes
  bytes=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$stats")
  python3 -c "print(f'{$end - $start:.3f} {$end - $start:.3f} $bytes $(size_of "$work/c.out")')"
}

declare -A labels=(
  [pf-raw]="pageflux dump (raw CRIU images)" [pf-raw-pc]="pageflux dump --no-direct-io (raw)" [pf-lz4]="pageflux dump --compress lz4"
  [pf-zstd1]="pageflux dump --compress zstd:1" [pf-zstd3]="pageflux dump --compress zstd:3"
  [c-raw]="C refread copy (raw, fsync)" [c-lz4]="C refread | lz4 -1"
  [c-zstd1]="C refread | zstd -T2 -1" [c-zstd3]="C refread | zstd -T2 -3"
  [c-raw-direct]="C refread copy-direct (raw, O_DIRECT)" [c-lz4-direct]="C refread | lz4 -1 | dd oflag=direct"
  [c-zstd1-direct]="C refread | zstd -T2 -1 | dd oflag=direct" [c-zstd3-direct]="C refread | zstd -T2 -3 | dd oflag=direct")
IFS=, read -r -a methods <<<"$selected"
for m in "${methods[@]}"; do
  [ -n "${labels[$m]:-}" ] || { echo "unknown method $m (known: $all_methods)" >&2; exit 2; }
done
declare -A best
for run in $(seq 1 "$runs"); do
  for m in "${methods[@]}"; do
    case "$m" in
      pf-raw) r=$(measure_pageflux raw) ;;
      pf-raw-pc) r=$(measure_pageflux raw-pc) ;;
      pf-lz4) r=$(measure_pageflux lz4) ;;
      pf-zstd*) r=$(measure_pageflux "zstd:${m#pf-zstd}") ;;
      c-*) r=$(measure_c "${m#c-}") ;;
    esac
    echo "run $run: $m: wall/own/raw/size = $r" >&2
    prev="${best[$m]:-}"
    if [ -z "$prev" ] || python3 -c "import sys; sys.exit(0 if ${r%% *} < ${prev%% *} else 1)"; then
      best[$m]="$r"
    fi
  done
done
rm -rf "$work/out" "$work/c.out"

echo
echo "| method                                    | wall s | own s  |  size MiB | ratio | GiB/s (wall) |"
echo "|-------------------------------------------|--------|--------|-----------|-------|--------------|"
for m in "${methods[@]}"; do
  python3 - "${labels[$m]}" ${best[$m]} <<'PY'
import sys
label, wall, own, raw, size = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print(f"| {label:<41} | {wall:6.2f} | {own:6.2f} | {size / 2**20:9.1f} | {raw / size:5.2f} | {raw / wall / 2**30:12.2f} |")
PY
done
echo "(own s: pageflux's report duration, without JVM start-up; for C the same as wall)"
