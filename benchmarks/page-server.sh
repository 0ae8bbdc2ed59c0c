#!/usr/bin/env bash
# Page-server benchmark on loopback: pageflux client -> pageflux server vs a plain socket copy.
#
#   benchmarks/page-server.sh [--gib N] [--runs 3] [--base /dev/shm] [--budget 64M]
#
# Starts the sample target with N GiB of touched private memory and `pageflux page-server --port 0`
# (one JVM, kept running: later sessions run warm, like a real server), then, each --runs times:
#   pageflux dump --to null               the reader alone (upper bound of any sink)
#   pageflux dump --to tcp://127.0.0.1:P  client and server: headers + pages over TCP, written to DIR
#   socat -b 1M file -> TCP -> file       the same number of bytes, plainly copied over loopback
# and prints MiB/s of the best run and the ratios. pageflux's rate is its own report's (read + send
# + the server's CLOSE answer, which comes after the pages are written and fsynced; no JVM start-up).
# The server writes through the page cache (--no-direct-io), as socat does. Its DIR, socat's source
# and target are all under --base (default /dev/shm, a tmpfs, so that the disk does not decide the
# result; use a disk path to include it). Run it alone:
#   flock -x /tmp/pf.lock benchmarks/page-server.sh
# Profile with PAGEFLUX_JAVA_OPTS='-XX:StartFlightRecording=filename=/tmp/x.jfr' (client and server);
# PAGEFLUX_CLIENT_JAVA_OPTS adds JVM options to the dumping clients only (e.g. JIT settings).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
gib=1 runs=3 base=/dev/shm budget=64M
while [ $# -gt 0 ]; do
  case "$1" in
    --gib) gib="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --base) base="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v socat >/dev/null || { echo "socat is needed: apt-get install socat" >&2; exit 2; }

work="$(mktemp -d "$base/pageflux-ps-bench.XXXXXX")"
target_pid="" holder="" server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  [ -n "$target_pid" ] && kill "$target_pid" 2>/dev/null || true
  [ -n "$holder" ] && kill "$holder" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -o "$work/vtarget" "$root/sources/src/main/resources/io/pageflux/source/sample/vtarget.c"
"$root/pageflux" --version >/dev/null   # builds on first use

# the target: its stdin is a pipe we hold open (it exits when the pipe closes)
mkfifo "$work/target.in"
sleep infinity > "$work/target.in" &
holder=$!
"$work/vtarget" --bulk-mib $((gib * 1024)) < "$work/target.in" > "$work/target.out" &
target_pid=$!
for _ in $(seq 1 600); do [ -s "$work/target.out" ] && break; sleep 0.1; done

mkdir "$work/recv"
"$root/pageflux" page-server --dir "$work/recv" --port 0 --no-direct-io > "$work/server.out" 2>"$work/server.err" &
server_pid=$!
port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's/^listening on [^ ]*:\([0-9]*\),.*/\1/p' "$work/server.out")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "the page server did not start:" >&2; cat "$work/server.err" >&2; exit 1; }
echo "target pid=$target_pid with ${gib} GiB touched; page server on 127.0.0.1:$port; files under $base;" \
     "best of $runs runs"

mibps() { # JSON report on stdin -> "MiB/s bytes" (page bytes; the wire carries 32 more per run header)
  python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("%.0f %d" % (r["bytesDumped"]/(r["durationMillis"]/1000.0)/2**20, r["bytesDumped"]))'
}

best() { # prints the largest of its arguments
  printf '%s\n' "$@" | sort -n | tail -n 1
}

median() { # prints the median of its arguments
  printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}

null_rates=() tcp_rates=() socat_rates=() bytes=0
for _ in $(seq 1 "$runs"); do
  read -r r _ < <("$root/pageflux" dump --pid "$target_pid" --to null --budget "$budget" --json --no-progress | mibps)
  null_rates+=("$r")
  read -r r bytes < <(PAGEFLUX_JAVA_OPTS="${PAGEFLUX_JAVA_OPTS:-} ${PAGEFLUX_CLIENT_JAVA_OPTS:-}" "$root/pageflux" dump --pid "$target_pid" --to "tcp://127.0.0.1:$port" --budget "$budget" \
      --json --no-progress | mibps)
  tcp_rates+=("$r")
  # wait until the server published the session, then drop it (the next run starts from an empty DIR)
  for _ in $(seq 1 100); do
    [ -n "$(find "$work/recv" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -print -quit)" ] && break
    sleep 0.05
  done
  find "$work/recv" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -exec rm -rf {} +

  # socat: the same number of bytes, from a file in memory, over loopback TCP, into a file
  [ -f "$work/socat.src" ] || head -c "$bytes" /dev/urandom > "$work/socat.src"
  sport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  socat -u -b 1048576 "TCP-LISTEN:$sport,bind=127.0.0.1,reuseaddr" "CREATE:$work/socat.dst" &
  receiver=$!
  for _ in $(seq 1 100); do ss -ltn "sport = :$sport" | grep -q LISTEN && break; sleep 0.02; done
  start=$(date +%s.%N)
  socat -u -b 1048576 "OPEN:$work/socat.src" "TCP:127.0.0.1:$sport"
  wait "$receiver"
  end=$(date +%s.%N)
  socat_rates+=("$(python3 -c "print('%.0f' % ($bytes / ($end - $start) / 2**20))")")
  rm -f "$work/socat.dst"
done

n=$(best "${null_rates[@]}") t=$(best "${tcp_rates[@]}") s=$(best "${socat_rates[@]}")
mt=$(median "${tcp_rates[@]}") ms=$(median "${socat_rates[@]}")
echo
echo "| path                                         | best MiB/s | median | runs (MiB/s)"
echo "|----------------------------------------------|------------|--------|-------------"
printf "| %-44s | %10s | %6s | %s\n" "pageflux dump --to null" "$n" "$(median "${null_rates[@]}")" "${null_rates[*]}"
printf "| %-44s | %10s | %6s | %s\n" "pageflux dump --to tcp:// -> page-server" "$t" "$mt" "${tcp_rates[*]}"
printf "| %-44s | %10s | %6s | %s\n" "socat -b 1M file -> TCP -> file (same bytes)" "$s" "$ms" "${socat_rates[*]}"
python3 -c "print('page server / socat = %.2fx (best) %.2fx (median)   page server / null sink = %.2fx (best)' % ($t / $s, $mt / $ms, $t / $n))"
