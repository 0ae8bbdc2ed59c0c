#!/usr/bin/env bash
# Whole-process benchmarks: one target, several readers side by side, in one invocation.
#
#   benchmarks/whole-process.sh [--gib N] [--budget 64M] [--runs 3] [--skip-file] [--settle S]   throughput
#   benchmarks/whole-process.sh --memory [--budget 64M]                             constant memory
#   benchmarks/whole-process.sh --sparse [--sparse-gib 64] [--runs 3]               PAGEMAP_SCAN vs pagemap
#
# Throughput (default): starts the sample target with N GiB of touched private memory, then runs each
# reader --runs times, interleaved (run 1 of every reader, then run 2, ...), and prints the best run:
#   C vm            refread vm    : process_vm_readv, 4 MiB per call (THE reference)
#   C smaps+vm      refread smaps : the same after reading /proc/PID/smaps (the metadata pageflux needs)
#   C mem           refread mem   : pread(/proc/PID/mem), 4 MiB per call
#   pageflux CLI    pageflux dump --to null : a fresh JVM per dump, as a user runs the command
#   pageflux warm   WarmDump null : runs+1 dumps in one JVM (a library user's application); the first
#                                   (cold) one is not counted
#   ... --read-threads 2            : the same two with each batch copied by two threads (two cores)
#   C copy          refread copy  : process_vm_readv + write(2) + fsync of one file on the same disk
#   C copy direct   refread copy-direct : the same with the file opened O_DIRECT (no page cache)
#   pageflux CLI    pageflux dump --out DIR : CRIU images (write + fsync of every file, rename); pages
#                                   files with O_DIRECT (the default)
#   ... --no-direct-io              : the same through the page cache
#   pageflux warm   WarmDump DIR
# GiB/s is bytes / the reader's own measured duration: C's from its first read to its last (and
# fsync); pageflux's from the dump's start (subscribing: smaps, scan, reads, sink, fsync, rename) to
# its report, without JVM start-up. The CLI rows also show the wall time of the whole command, JVM
# start-up included; C has no start-up to speak of. The ratio is to C vm (null rows) or, for the file
# rows, to the faster of C copy and C copy direct of the same invocation. Before every file-writing run: `sync`, so no run pays for the previous
# one's dirty pages; with --settle S also a pause of S seconds. On a VM with free page reporting
# (virtio-balloon), memory freed by deleting the previous output goes back to the host after ~2 s and
# filling page cache afterwards costs host page faults; how much of that a writer pays depends on the
# process (a fresh JVM, which first takes ~100 MiB for itself, pays far more than a fresh C process:
# a plain Java FileChannel loop writes 0.3-0.4 GiB/s after `--settle 3`, the C loop 1.35-1.4, and the
# same Java loop 1.2-1.7 GiB/s when it writes again at once). Default 0: back to back.
#
# Constant memory (--memory): dumps a 1 GiB and an 8 GiB target with --budget, --to null and to a
# directory, and a tiny target (the JVM baseline: pageflux's own peak RSS with one buffer in use),
# then checks that the peak RSS of the 1 GiB and 8 GiB dumps are within 32 MiB of each other and
# below baseline + budget + 64 MiB.
#
# Sparse (--sparse): a target with --sparse-gib GiB reserved and 1 page in 100 touched. Prints the
# time to find the pages (ScanTime: the page scan alone, best of --runs in one JVM) and the whole dump
# (pageflux dump --to null) with --scanner pagemap-scan and with --scanner pagemap-file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
gib=1 budget=64M runs=3 skip_file=0 mode=throughput sparse_gib=64 settle_secs=0
while [ $# -gt 0 ]; do
  case "$1" in
    --gib) gib="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --skip-file) skip_file=1; shift ;;
    --memory) mode=memory; shift ;;
    --sparse) mode=sparse; shift ;;
    --sparse-gib) sparse_gib="$2"; shift 2 ;;
    --settle) settle_secs="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

work="$(mktemp -d /var/tmp/pageflux-bench.XXXXXX)"
targets=() holders=()
cleanup() {
  for p in "${targets[@]}" "${holders[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -o "$work/refread" "$here/c/refread.c"
gcc -O2 -o "$work/vtarget" "$root/sources/src/main/resources/io/pageflux/source/sample/vtarget.c"
"$root/pageflux" --version >/dev/null   # builds on first use
bench_jar="$root/benchmarks/target/benchmarks.jar"
if [ ! -f "$bench_jar" ] || [ -n "$(find "$root/benchmarks/src" -newer "$bench_jar" -type f | head -n 1)" ] \
    || [ "$root/pipeline/target/pageflux.jar" -nt "$bench_jar" ]; then
  (cd "$root" && ./mvnw -q -B -ntp -DskipTests -pl benchmarks -am package)
fi

start_target() { # args for vtarget; sets $target_pid
  local n=${#targets[@]}
  mkfifo "$work/in$n"
  sleep infinity > "$work/in$n" &
  holders+=($!)
  "$work/vtarget" "$@" < "$work/in$n" > "$work/out$n" &
  target_pid=$!
  targets+=("$target_pid")
  for _ in $(seq 1 1200); do [ -s "$work/out$n" ] && return 0; sleep 0.1; done
  echo "the target did not start: vtarget $*" >&2; exit 1
}

py() { python3 -c "$@"; }

# a tiny target: the first dump after a build makes the launcher's class-data archive (see ./pageflux),
# so that no measured run pays for writing it; --memory also takes its JVM baseline from it
start_target
tiny_pid=$target_pid
"$root/pageflux" dump --pid "$tiny_pid" --to null --no-progress >/dev/null
gibps_of_json() { py 'import json,sys; r=json.loads(sys.stdin.read()); print("%.3f" % (r["bytesDumped"]/(r["durationMillis"]/1000.0)/2**30))'; }

# ---------------------------------------------------------------------------------------- throughput
throughput() {
  start_target --bulk-mib $((gib * 1024))
  local pid=$target_pid
  echo "target pid=$pid with ${gib} GiB touched; budget=$budget; best of $runs runs (interleaved)"
  declare -A best wall rss
  record() { # name gibps wall rss
    if py "import sys; sys.exit(0 if $2 > ${best[$1]:-0} else 1)"; then best[$1]=$2; wall[$1]=$3; rss[$1]=$4; fi
  }
  timed() { # name command... (C readers print gibps=)
    local name="$1"; shift
    local s e out
    s=$(date +%s.%N); out=$(/usr/bin/time -f %M -o "$work/rss" "$@"); e=$(date +%s.%N)
    record "$name" "$(sed -n 's/.*gibps=\([0-9.]*\).*/\1/p' <<<"$out")" "$(py "print('%.2f' % ($e - $s))")" "$(tail -n 1 "$work/rss")"
  }
  cli() { # name pageflux-args...
    local name="$1"; shift
    local s e out
    s=$(date +%s.%N)
    out=$(/usr/bin/time -f %M -o "$work/rss" "$root/pageflux" dump --pid "$pid" --budget "$budget" --json --no-progress "$@")
    e=$(date +%s.%N)
    record "$name" "$(gibps_of_json <<<"$out")" "$(py "print('%.2f' % ($e - $s))")" "$(tail -n 1 "$work/rss")"
  }
  warm() { # name null|DIR [read-threads] [pause-ms] : runs+1 dumps in one JVM, the first not counted
    local name="$1" out
    out=$(/usr/bin/time -f %M -o "$work/rss" java -cp "$bench_jar" io.pageflux.bench.WarmDump "$pid" "$2" $((runs + 1)) \
        "$budget" "${3:-1}" "${4:-0}")
    echo "$out" | sed 's/^/    warm /' >&2
    local g
    g=$(tail -n +2 <<<"$out" | sed -n 's/.*gibps=\([0-9.]*\).*/\1/p' | sort -g | tail -n 1)
    record "$name" "$g" "-" "$(tail -n 1 "$work/rss")"
  }
  for _ in $(seq 1 "$runs"); do
    timed cvm "$work/refread" vm "$pid"
    timed csmaps "$work/refread" smaps "$pid"
    timed cmem "$work/refread" mem "$pid"
    cli pnull --to null
    cli pnull2 --to null --read-threads 2
  done
  warm pwarm null
  warm pwarm2 null 2
  if [ "$skip_file" = 0 ]; then
    settle() { sync; sleep "$settle_secs"; }
    for _ in $(seq 1 "$runs"); do
      settle; timed ccopy "$work/refread" copy "$pid" "$work/copy.bin"; rm -f "$work/copy.bin"
      settle; timed ccopyd "$work/refread" copy-direct "$pid" "$work/copy.bin"; rm -f "$work/copy.bin"
      settle; cli pdir --out "$work/out" --force; rm -rf "$work/out"
      settle; cli pdirpc --out "$work/out" --force --no-direct-io; rm -rf "$work/out"
    done
    warm pwarmdir "$work/warm-out" 1 $((settle_secs * 1000))
  fi
  row() { # label key reference-key
    py "
g=${best[$2]:-0}; ref=${best[$3]:-0}; w='${wall[$2]:--}'; r=int('${rss[$2]:-0}')
w = w + ' s' if w != '-' else '-'
print(f'| {\"$1\":<44} | {g:6.2f} | {g/ref if ref else 0:5.2f}x | {w:>7} | {r/1024:7.1f} MiB |')"
  }
  echo
  printf '| %-44s |  GiB/s |  ratio |    wall |    peak RSS |\n' "reader ($gib GiB target)"
  echo "|----------------------------------------------|--------|--------|---------|-------------|"
  row "C process_vm_readv (reference)" cvm cvm
  row "C smaps + process_vm_readv" csmaps cvm
  row "C /proc/PID/mem" cmem cvm
  row "pageflux dump --to null (CLI, cold JVM)" pnull cvm
  row "pageflux Dump to null (warm JVM)" pwarm cvm
  row "pageflux dump --to null --read-threads 2" pnull2 cvm
  row "pageflux Dump to null, 2 read threads (warm)" pwarm2 cvm
  if [ "$skip_file" = 0 ]; then
    # file rows: against the faster C writer of this run
    if py "import sys; sys.exit(0 if ${best[ccopyd]:-0} >= ${best[ccopy]:-0} else 1)"; then cfile=ccopyd; else cfile=ccopy; fi
    row "C read + write + fsync" ccopy "$cfile"
    row "C read + O_DIRECT write + fsync" ccopyd "$cfile"
    row "pageflux dump --out DIR (CLI, cold JVM)" pdir "$cfile"
    row "pageflux dump --out DIR --no-direct-io (CLI)" pdirpc "$cfile"
    row "pageflux Dump to DIR (warm JVM)" pwarmdir "$cfile"
  fi
  echo
  echo "ratio = GiB/s / the reference's GiB/s in this run (null rows: C process_vm_readv; file rows: the faster C writer)"
}

# ------------------------------------------------------------------------------------ constant memory
memory() {
  peak_rss() { # pid sink-args... -> KiB
    /usr/bin/time -f %M -o "$work/rss" "$root/pageflux" dump --pid "$1" --budget "$budget" --json --no-progress \
        "${@:2}" > "$work/report.json"
    rm -rf "$work/out"
    tail -n 1 "$work/rss"
  }
  local tiny=$tiny_pid
  start_target --bulk-mib 1024; local one=$target_pid
  start_target --bulk-mib 8192; local eight=$target_pid
  declare -A kib
  for sink in null dir; do
    local args=(--to null)
    [ "$sink" = dir ] && args=(--out "$work/out" --force)
    kib[tiny-$sink]=$(peak_rss "$tiny" "${args[@]}")
    kib[1-$sink]=$(peak_rss "$one" "${args[@]}")
    kib[8-$sink]=$(peak_rss "$eight" "${args[@]}")
  done
  py "
import sys
kib = {$(for k in "${!kib[@]}"; do printf "'%s': %s, " "$k" "${kib[$k]}"; done)}
budget = '$budget'
units = {'K': 1 / 1024, 'M': 1, 'G': 1024}
budget_mib = float(budget[:-1]) * units[budget[-1].upper()] if budget[-1].upper() in units else int(budget) / 2**20
ok = True
print(f'| sink | tiny target (JVM baseline) | 1 GiB target | 8 GiB target | 8 GiB - 1 GiB | limit: baseline + {budget} + 64 MiB |')
print('|---|---|---|---|---|---|')
for sink in ('null', 'dir'):
    base, one, eight = (kib[f'{t}-{sink}'] / 1024 for t in ('tiny', '1', '8'))
    limit = base + budget_mib + 64
    same = abs(eight - one) <= 32
    under = max(one, eight) < limit
    ok &= same and under
    print(f'| {sink} | {base:.1f} MiB | {one:.1f} MiB | {eight:.1f} MiB | {eight - one:+.1f} MiB ({\"ok\" if same else \"FAIL: > 32 MiB\"}) '
          f'| {limit:.1f} MiB ({\"ok\" if under else \"FAIL\"}) |')
print()
print('constant memory: ' + ('PASS' if ok else 'FAIL'))
sys.exit(0 if ok else 1)"
}

# ------------------------------------------------------------------------------------------- sparse
sparse() {
  start_target --sparse-mib $((sparse_gib * 1024))
  local pid=$target_pid
  local reserved
  reserved=$(sed -n 's/.*SPAGES=\([0-9]*\).*/\1/p' "$work/out1")
  echo "target pid=$pid: ${sparse_gib} GiB reserved, 1 page in 100 touched ($(( (reserved + 99) / 100 )) pages); best of $runs"
  echo
  echo "| scanner | page scan alone | pages found | whole dump --to null | dump GiB/s |"
  echo "|---|---|---|---|---|"
  for scanner in pagemap-scan pagemap-file; do
    local scan best_ms=0 best_gibps=0 pages
    scan=$(java -cp "$bench_jar" io.pageflux.bench.ScanTime "$pid" "$scanner" $((runs + 1)) | tail -n +2)
    pages=$(tail -n 1 <<<"$scan" | sed -n 's/.*pages=\([0-9]*\).*/\1/p')
    local scan_ms
    scan_ms=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$scan" | sort -g | head -n 1)
    best_ms=999999
    for _ in $(seq 1 "$runs"); do
      local out ms
      out=$("$root/pageflux" dump --pid "$pid" --to null --json --no-progress --scanner "$scanner")
      ms=$(py "import json,sys; print(json.loads(sys.stdin.read())['durationMillis'])" <<<"$out")
      if [ "$ms" -lt "$best_ms" ]; then best_ms=$ms; best_gibps=$(gibps_of_json <<<"$out"); fi
    done
    py "print(f'| $scanner | {float($scan_ms) * 1000:.1f} ms | $pages | $best_ms ms | $best_gibps |')"
  done
}

"$mode"
