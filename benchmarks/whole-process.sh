#!/usr/bin/env bash
# Whole-process benchmark: one target, several readers side by side, in one invocation.
#
#   benchmarks/whole-process.sh [--gib N] [--budget 64M] [--runs 3] [--skip-file]
#
# Starts the sample target with N GiB of touched private memory, then runs, each --runs times:
#   C vm      refread vm    : process_vm_readv, 4 MiB per call (the reference)
#   C mem     refread mem   : pread(/proc/PID/mem), 4 MiB per call
#   pageflux  null          : pageflux dump --to null
#   C copy    refread copy  : process_vm_readv + write(2) to a file on the same disk (file reference)
#   pageflux  dir           : pageflux dump --out DIR (CRIU image files)
# and prints GiB/s (best run), the ratio to the C reader of the same kind, and each process's peak RSS.
# pageflux's GiB/s is its own report's (read + sink time, without JVM start-up); its wall time is
# printed beside it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
gib=1 budget=64M runs=3 skip_file=0 extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --gib) gib="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --skip-file) skip_file=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

work="$(mktemp -d /var/tmp/pageflux-bench.XXXXXX)"
target_pid="" holder=""
cleanup() {
  [ -n "$target_pid" ] && kill "$target_pid" 2>/dev/null || true
  [ -n "$holder" ] && kill "$holder" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -o "$work/refread" "$here/c/refread.c"
gcc -O2 -o "$work/vtarget" "$root/sources/src/main/resources/io/pageflux/source/sample/vtarget.c"
"$root/pageflux" --version >/dev/null   # builds on first use

# The target: its stdin is a pipe we hold open (it exits when the pipe closes).
mkfifo "$work/target.in"
sleep infinity > "$work/target.in" &
holder=$!
"$work/vtarget" --bulk-mib $((gib * 1024)) < "$work/target.in" > "$work/target.out" &
target_pid=$!
for _ in $(seq 1 600); do [ -s "$work/target.out" ] && break; sleep 0.1; done
echo "target pid=$target_pid with ${gib} GiB touched; budget=$budget; best of $runs runs"

peak_rss_kib() { # file written by /usr/bin/time -f %M
  tail -n 1 "$1"
}

best=()
measure() { # name kind command... ; prints "gibps wall rss"
  local name="$1"; shift
  local best_g=0 best_wall=0 best_rss=0
  for _ in $(seq 1 "$runs"); do
    local start end out g rss
    start=$(date +%s.%N)
    out=$(/usr/bin/time -f %M -o "$work/rss" "$@")
    end=$(date +%s.%N)
    rss=$(peak_rss_kib "$work/rss")
    case "$name" in
      pageflux*) g=$(python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("%.3f" % (r["bytesDumped"]/ (r["durationMillis"]/1000.0) / 2**30))' <<<"$out") ;;
      *) g=$(sed -n 's/.*gibps=\([0-9.]*\).*/\1/p' <<<"$out") ;;
    esac
    if python3 -c "import sys; sys.exit(0 if $g > $best_g else 1)"; then
      best_g=$g; best_wall=$(python3 -c "print('%.2f' % ($end - $start))"); best_rss=$rss
    fi
    rm -rf "$work/out"
  done
  echo "$best_g $best_wall $best_rss"
}

row() { # label gibps wall rss reference_gibps
  python3 - "$@" <<'PY'
import sys
label, g, wall, rss, ref = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
print(f"| {label:<34} | {g:7.2f} | {g/ref:5.2f}x | {wall:>6} s | {rss/1024:8.1f} MiB |")
PY
}

echo
echo "| reader                             |   GiB/s | ratio |   wall   |  peak RSS    |"
echo "|------------------------------------|---------|-------|----------|--------------|"
read -r cvm cvm_wall cvm_rss < <(measure "C vm" "$work/refread" vm "$target_pid")
row "C process_vm_readv (reference)" "$cvm" "$cvm_wall" "$cvm_rss" "$cvm"
read -r cmem cmem_wall cmem_rss < <(measure "C mem" "$work/refread" mem "$target_pid")
row "C /proc/PID/mem" "$cmem" "$cmem_wall" "$cmem_rss" "$cvm"
read -r pnull pnull_wall pnull_rss < <(measure "pageflux null" "$root/pageflux" dump --pid "$target_pid" --to null \
    --budget "$budget" --json --no-progress)
row "pageflux dump --to null" "$pnull" "$pnull_wall" "$pnull_rss" "$cvm"
if [ "$skip_file" = 0 ]; then
  read -r ccopy ccopy_wall ccopy_rss < <(measure "C copy" "$work/refread" copy "$target_pid" "$work/copy.bin")
  row "C read+write to file (reference)" "$ccopy" "$ccopy_wall" "$ccopy_rss" "$ccopy"
  rm -f "$work/copy.bin"
  read -r pdir pdir_wall pdir_rss < <(measure "pageflux dir" "$root/pageflux" dump --pid "$target_pid" \
      --out "$work/out" --force --budget "$budget" --json --no-progress)
  row "pageflux dump --out DIR" "$pdir" "$pdir_wall" "$pdir_rss" "$ccopy"
fi
