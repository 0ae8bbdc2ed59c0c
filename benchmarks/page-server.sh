#!/usr/bin/env bash
# Page-server benchmark on loopback: pageflux client -> pageflux server vs a plain socket copy.
#
#   benchmarks/page-server.sh [--gib N] [--runs 3] [--base /dev/shm] [--budget 64M] [--warm-client]
#
# Starts the sample target with N GiB of touched private memory and two `pageflux page-server --port 0`
# (one JVM each, kept running: later sessions run warm, like a real server), one per plain-TCP
# transport: `--transport threads` (the default: a thread per session) and `--transport netty`. Then,
# each --runs times:
#   pageflux dump --to null                 the reader alone (upper bound of any sink)
#   pageflux dump --to tcp://127.0.0.1:P    client and server, into each server in turn: headers +
#                                           pages over TCP, written to its DIR
#   socat -b 1M file -> TCP -> file         the same number of bytes, plainly copied over loopback
# and prints MiB/s (best, median, every run) and the ratios. pageflux's rate is its own report's (read
# + send + the server's CLOSE answer, which comes after the pages are written and fsynced; no JVM
# start-up). With --warm-client the dumps to the servers come from ONE client JVM
# (io.pageflux.bench.WarmDump, alternating between the servers, one warm-up round not counted) instead
# of one `pageflux dump` process per run: the server's rate without the one-shot client's start-up
# and JIT warm-up; the null-sink row is then left out and socat's runs follow the client's.
# The servers write through the page cache (--no-direct-io), as socat does. Their DIRs, socat's source
# and target are all under --base (default /dev/shm, a tmpfs, so that the disk does not decide the
# result; use a disk path to include it). Run it alone:
#   flock -x /tmp/pf.lock benchmarks/page-server.sh
# Profile with PAGEFLUX_JAVA_OPTS='-XX:StartFlightRecording=filename=/tmp/x.jfr' (client and server);
# PAGEFLUX_CLIENT_JAVA_OPTS adds JVM options to the dumping clients only (e.g. JIT settings).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
gib=1 runs=3 base=/dev/shm budget=64M warm=""
while [ $# -gt 0 ]; do
  case "$1" in
    --gib) gib="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --base) base="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    --warm-client) warm=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v socat >/dev/null || { echo "socat is needed: apt-get install socat" >&2; exit 2; }

work="$(mktemp -d "$base/pageflux-ps-bench.XXXXXX")"
target_pid="" holder="" server_pids=()
cleanup() {
  for p in "${server_pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  [ -n "$target_pid" ] && kill "$target_pid" 2>/dev/null || true
  [ -n "$holder" ] && kill "$holder" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -o "$work/vtarget" "$root/sources/src/main/resources/io/pageflux/source/sample/vtarget.c"
"$root/pageflux" --version >/dev/null   # builds on first use
bench_jar="$root/benchmarks/target/benchmarks.jar"
if [ -n "$warm" ] && { [ ! -f "$bench_jar" ] || [ -n "$(find "$root/benchmarks/src" -newer "$bench_jar" -type f | head -n 1)" ] \
    || [ "$root/pipeline/target/pageflux.jar" -nt "$bench_jar" ]; }; then
  (cd "$root" && ./mvnw -q -B -ntp -DskipTests -pl benchmarks -am package)
fi

# the target: its stdin is a pipe we hold open (it exits when the pipe closes)
mkfifo "$work/target.in"
sleep infinity > "$work/target.in" &
holder=$!
"$work/vtarget" --bulk-mib $((gib * 1024)) < "$work/target.in" > "$work/target.out" &
target_pid=$!
for _ in $(seq 1 600); do [ -s "$work/target.out" ] && break; sleep 0.1; done

transports=(threads netty)
declare -A ports
for t in "${transports[@]}"; do
  mkdir "$work/recv-$t"
  "$root/pageflux" page-server --dir "$work/recv-$t" --port 0 --no-direct-io --transport "$t" \
      > "$work/server-$t.out" 2>"$work/server-$t.err" &
  server_pids+=($!)
  port=""
  for _ in $(seq 1 300); do
    port=$(sed -n 's/^listening on [^ ]*:\([0-9]*\),.*/\1/p' "$work/server-$t.out")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "the $t page server did not start:" >&2; cat "$work/server-$t.err" >&2; exit 1; }
  ports[$t]=$port
done
echo "target pid=$target_pid with ${gib} GiB touched; page servers on 127.0.0.1: threads=${ports[threads]}" \
     "netty=${ports[netty]}; files under $base; $runs runs${warm:+, warm client}"

mibps() { # JSON report on stdin -> "MiB/s bytes" (page bytes; the wire carries 32 more per run header)
  python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("%.0f %d" % (r["bytesDumped"]/(r["durationMillis"]/1000.0)/2**20, r["bytesDumped"]))'
}

best() { # prints the largest of its arguments
  printf '%s\n' "$@" | sort -n | tail -n 1
}

median() { # prints the median of its arguments
  printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}

drop_sessions() { # waits until the server published the session, then drops it (the next run starts empty)
  for _ in $(seq 1 100); do
    [ -n "$(find "$1" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -print -quit)" ] && break
    sleep 0.05
  done
  find "$1" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -exec rm -rf {} +
}

socat_run() { # the same number of bytes, from a file in memory, over loopback TCP, into a file; prints MiB/s
  [ -f "$work/socat.src" ] || head -c "$bytes" /dev/urandom > "$work/socat.src"
  local sport receiver start end
  sport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  socat -u -b 1048576 "TCP-LISTEN:$sport,bind=127.0.0.1,reuseaddr" "CREATE:$work/socat.dst" &
  receiver=$!
  for _ in $(seq 1 100); do ss -ltn "sport = :$sport" | grep -q LISTEN && break; sleep 0.02; done
  start=$(date +%s.%N)
  socat -u -b 1048576 "OPEN:$work/socat.src" "TCP:127.0.0.1:$sport" \
    || { kill "$receiver" 2>/dev/null; echo "the sending socat failed" >&2; return 1; }
  wait "$receiver"
  end=$(date +%s.%N)
  rm -f "$work/socat.dst"
  python3 -c "print('%.0f' % ($bytes / ($end - $start) / 2**20))"
}

null_rates=() threads_rates=() netty_rates=() socat_rates=() bytes=0
if [ -n "$warm" ]; then
  # one client JVM: a warm-up round into both servers, then --runs rounds alternating between them
  java ${PAGEFLUX_JAVA_OPTS:-} ${PAGEFLUX_CLIENT_JAVA_OPTS:-} -cp "$bench_jar" io.pageflux.bench.WarmDump \
      --clean-sessions "$work/recv-threads" --clean-sessions "$work/recv-netty" \
      "$target_pid" "tcp://127.0.0.1:${ports[threads]},tcp://127.0.0.1:${ports[netty]}" $((runs + 1)) "$budget" \
      > "$work/warm.out"
  while read -r line; do
    run=$(sed -n 's/^run=\([0-9]*\) .*/\1/p' <<< "$line")
    [ "$run" = 1 ] && continue
    gibps=$(sed -n 's/.* gibps=\([0-9.]*\).*/\1/p' <<< "$line")
    bytes=$(sed -n 's/.* bytes=\([0-9]*\).*/\1/p' <<< "$line")
    r=$(python3 -c "print('%.0f' % ($gibps * 1024))")
    case "$line" in
      *":${ports[threads]} "*) threads_rates+=("$r") ;;
      *":${ports[netty]} "*) netty_rates+=("$r") ;;
    esac
  done < "$work/warm.out"
  for _ in $(seq 1 "$runs"); do socat_rates+=("$(socat_run)"); done
else
  for _ in $(seq 1 "$runs"); do
    read -r r _ < <("$root/pageflux" dump --pid "$target_pid" --to null --budget "$budget" --json --no-progress | mibps)
    null_rates+=("$r")
    for t in "${transports[@]}"; do
      read -r r bytes < <(PAGEFLUX_JAVA_OPTS="${PAGEFLUX_JAVA_OPTS:-} ${PAGEFLUX_CLIENT_JAVA_OPTS:-}" "$root/pageflux" dump \
          --pid "$target_pid" --to "tcp://127.0.0.1:${ports[$t]}" --budget "$budget" --json --no-progress | mibps)
      if [ "$t" = threads ]; then threads_rates+=("$r"); else netty_rates+=("$r"); fi
      drop_sessions "$work/recv-$t"
    done
    socat_rates+=("$(socat_run)")
  done
fi

client=$([ -n "$warm" ] && echo "warm client (WarmDump)" || echo "pageflux dump")
s=$(best "${socat_rates[@]}") ms=$(median "${socat_rates[@]}")
echo
echo "| path                                                     | best MiB/s | median | runs (MiB/s)"
echo "|----------------------------------------------------------|------------|--------|-------------"
if [ -z "$warm" ]; then
  printf "| %-56s | %10s | %6s | %s\n" "pageflux dump --to null" "$(best "${null_rates[@]}")" "$(median "${null_rates[@]}")" "${null_rates[*]}"
fi
printf "| %-56s | %10s | %6s | %s\n" "$client -> page-server (threads)" "$(best "${threads_rates[@]}")" \
    "$(median "${threads_rates[@]}")" "${threads_rates[*]}"
printf "| %-56s | %10s | %6s | %s\n" "$client -> page-server --transport netty" "$(best "${netty_rates[@]}")" \
    "$(median "${netty_rates[@]}")" "${netty_rates[*]}"
printf "| %-56s | %10s | %6s | %s\n" "socat -b 1M file -> TCP -> file (same bytes)" "$s" "$ms" "${socat_rates[*]}"
for t in "${transports[@]}"; do
  if [ "$t" = threads ]; then rates=("${threads_rates[@]}"); else rates=("${netty_rates[@]}"); fi
  python3 -c "print('%-7s / socat = %.2fx (best) %.2fx (median)' % ('$t', $(best "${rates[@]}") / $s, $(median "${rates[@]}") / $ms))"
done
