#!/usr/bin/env bash
# Single-node throughput/latency of ringcache-node against a minimal axum "ceiling" in the same run.
#   bench/node-bench.sh            (env: REPEATS=3 DURATION=10s CONNS=50 WRK_THREADS=1 KEYS=100000
#                                   BASELINE=path/to/an/older/ringcache-node PIN=1 CALLGRIND=0)
# Builds release, starts the node and node/examples/ceiling.rs on 127.0.0.1, preloads KEYS keys of
# 100 bytes, then alternates ceiling/node runs of wrk (GET of random keys, PUT of random keys),
# REPEATS times, and prints medians and node/ceiling ratios as a Markdown table. With BASELINE, that
# binary runs as a third target ("baseline", preloaded the same way) and node/baseline ratios are
# printed too: the regression check between two builds. With PIN=1 (default on 2+ cores) every
# server is pinned to core 0 and wrk to core 1, so each server gets exactly one core. Each
# server's CPU time per request (user and system, from /proc/PID/stat) is printed too: on a
# shared VM it varies less than throughput, and it shows how much of a request is the kernel's.
#
# CALLGRIND=1: instead of throughput, counts the instructions each server executes per request
# (valgrind's callgrind, deterministic on a noisy machine): the servers run under callgrind with
# instrumentation off, and it is switched on only for one wrk run of DURATION per target and op
# (REPEATS is ignored). The profiles stay in CALLGRIND_DIR (default target/callgrind) for
# `callgrind_annotate`. Under callgrind a server is ~50x slower, so background work (the node's
# expiry sweep) takes a larger share of its instructions than in a real run.
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS=${REPEATS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
WRK_THREADS=${WRK_THREADS:-1}
KEYS=${KEYS:-100000}
NODE_ADDR=${NODE_ADDR:-127.0.0.1:17070}
CEIL_ADDR=${CEIL_ADDR:-127.0.0.1:17171}
BASE_ADDR=${BASE_ADDR:-127.0.0.1:17272}
BASELINE=${BASELINE:-}
CALLGRIND=${CALLGRIND:-0}
CALLGRIND_DIR=${CALLGRIND_DIR:-target/callgrind}
if [ -z "${PIN:-}" ]; then
  if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then PIN=1; else PIN=0; fi
fi
server_cpu=(); client_cpu=()
if [ "$PIN" = 1 ]; then server_cpu=(taskset -c 0); client_cpu=(taskset -c 1); fi
export BENCH_KEYS=$KEYS

if ! command -v wrk >/dev/null; then
  echo "wrk missing: apt-get update && apt-get install -y wrk" >&2
  exit 1
fi
# Prefix of each server's command line: nothing, or callgrind writing to CALLGRIND_DIR/<target>.
cg() { :; }
if [ "$CALLGRIND" = 1 ]; then
  if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
    echo "valgrind missing: apt-get update && apt-get install -y valgrind" >&2
    exit 1
  fi
  mkdir -p "$CALLGRIND_DIR"
  rm -f "$CALLGRIND_DIR"/*.out*
  cg() { echo valgrind --tool=callgrind --instr-atstart=no "--callgrind-out-file=$CALLGRIND_DIR/$1.out"; }
fi

cargo build --release -q -p ringcache-node --bin ringcache-node --example ceiling

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# shellcheck disable=SC2046 # cg's words are meant to be split
RUST_LOG=warn "${server_cpu[@]}" $(cg node) target/release/ringcache-node --listen "$NODE_ADDR" --node-id bench --max-memory 1Gi &
PIDS+=($!)
NODE_PID=$!
# shellcheck disable=SC2046
"${server_cpu[@]}" $(cg ceiling) target/release/examples/ceiling "$CEIL_ADDR" &
PIDS+=($!)
TARGETS=(ceiling node)
TARGET_PIDS=("$!" "$NODE_PID")
ADDRS=("$CEIL_ADDR" "$NODE_ADDR")
NODES=("$NODE_ADDR")
if [ -n "$BASELINE" ]; then
  # shellcheck disable=SC2046
  RUST_LOG=warn "${server_cpu[@]}" $(cg baseline) "$BASELINE" --listen "$BASE_ADDR" --node-id base --max-memory 1Gi &
  PIDS+=($!)
  TARGETS+=(baseline)
  TARGET_PIDS+=("$!")
  ADDRS+=("$BASE_ADDR")
  NODES+=("$BASE_ADDR")
fi

for addr in "${ADDRS[@]}"; do
  for _ in $(seq 1 600); do
    curl -fs -o /dev/null "http://$addr/v1/keys/probe" -X PUT -d x && break
    sleep 0.1
  done
done

# Preload through the batch API: KEYS keys "key:N" with 100-byte values.
for addr in "${NODES[@]}"; do
python3 - "$addr" "$KEYS" <<'PY'
import json, sys, urllib.request
addr, keys = sys.argv[1], int(sys.argv[2])
value = "v" * 100
for start in range(0, keys, 1000):
    ops = [{"op": "set", "key": f"key:{i}", "value": value} for i in range(start, min(start + 1000, keys))]
    req = urllib.request.Request(f"http://{addr}/v1/batch", data=json.dumps({"ops": ops}).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req) as r:
        res = json.load(r)["results"]
        assert all(x["status"] == 204 for x in res), res[:3]
PY
done
items=$(curl -fs "http://$NODE_ADDR/v1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"])')
echo "preloaded: $items items" >&2

OUT=$(mktemp)
cpu_ticks() { awk '{print $14 + $15, $14, $15}' "/proc/$1/stat"; }
run() { # target op addr pid
  local line before after
  read -r -a before < <(cpu_ticks "$4")
  line=$("${client_cpu[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" -s "bench/lua/$2.lua" "http://$3" | grep '^RESULT')
  read -r -a after < <(cpu_ticks "$4")
  echo "$1 $2 $line $((after[1] - before[1])) $((after[2] - before[2]))" | tee -a "$OUT" >&2
}

if [ "$CALLGRIND" = 1 ]; then
  for op in get put; do
    for i in "${!TARGETS[@]}"; do
      pid=${TARGET_PIDS[$i]}
      dumps=$(find "$CALLGRIND_DIR" -name "${TARGETS[$i]}.out.*" | wc -l)
      callgrind_control -i on "$pid" >/dev/null
      line=$("${client_cpu[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" -s "bench/lua/$op.lua" "http://${ADDRS[$i]}" | grep '^RESULT')
      callgrind_control -i off "$pid" >/dev/null
      callgrind_control -d "$pid" >/dev/null
      # Dumps are numbered from 1: this one is the next number.
      dump="$CALLGRIND_DIR/${TARGETS[$i]}.out.$((dumps + 1))"
      for _ in $(seq 1 300); do
        grep -q '^totals:' "$dump" 2>/dev/null && break
        sleep 0.1
      done
      ir=$(awk '/^totals:/ {print $2}' "$dump")
      echo "${TARGETS[$i]} $op $line $ir $dump" | tee -a "$OUT" >&2
    done
  done
  python3 - "$OUT" "$DURATION" <<'PY'
import sys
path, duration = sys.argv[1], sys.argv[2]
secs = float(duration.rstrip("smh")) * {"s": 1, "m": 60, "h": 3600}.get(duration[-1], 1)
rows = {}
for line in open(path):
    target, op, _, rps, _p50, _p99, _st, _sock, ir, dump = line.split()
    rows[(target, op)] = (float(rps) * secs, int(ir), dump)
print("| op | target | requests | instructions per request | vs ceiling | profile |")
print("|---|---|---:|---:|---:|---|")
for (target, op), (n, ir, dump) in rows.items():
    per = ir / n
    ceil = rows[("ceiling", op)]
    print(f"| {op.upper()} | {target} | {n:.0f} | {per:.0f} | {per / (ceil[1] / ceil[0]):.2f} | {dump} |")
PY
  rm -f "$OUT"
  exit 0
fi

for rep in $(seq 1 "$REPEATS"); do
  for op in get put; do
    for i in "${!TARGETS[@]}"; do
      run "${TARGETS[$i]}" "$op" "${ADDRS[$i]}" "${TARGET_PIDS[$i]}"
    done
  done
done
rss_kb=$(ps -o rss= -p "$NODE_PID" | tr -d ' ')

echo "pinned: $PIN (servers on core 0, wrk on core 1)" >&2
python3 - "$OUT" "$REPEATS" "$rss_kb" "$items" "$DURATION" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
path, repeats, rss_kb, items, duration, hz = sys.argv[1:7]
secs = float(duration.rstrip("smh")) * {"s": 1, "m": 60, "h": 3600}.get(duration[-1], 1)
runs = {}
for line in open(path):
    target, op, _, rps, p50, p99, status_err, sock_err, user, system = line.split()
    n = float(rps) * secs
    # CPU µs per request from clock ticks.
    us = lambda ticks: int(ticks) / int(hz) * 1e6 / n
    runs.setdefault((target, op), []).append(
        (float(rps), float(p50), float(p99), int(status_err), int(sock_err), us(user), us(system)))
med = lambda xs: statistics.median(xs)
print(f"| op | target | ops/s (median of {repeats}) | p50 µs | p99 µs | non-2xx / socket errors | CPU µs/request user + system |")
print("|---|---|---:|---:|---:|---:|---:|")
targets = [t for t in ("ceiling", "node", "baseline") if (t, "get") in runs]
for op in ("get", "put"):
    for target in targets:
        r = runs[(target, op)]
        print(f"| {op.upper()} | {target} | {med([x[0] for x in r]):.0f} | {med([x[1] for x in r]):.0f} | "
              f"{med([x[2] for x in r]):.0f} | {sum(x[3] for x in r)} / {sum(x[4] for x in r)} | "
              f"{med([x[5] for x in r]):.2f} + {med([x[6] for x in r]):.2f} |")
print()
for op in ("get", "put"):
    n, c = runs[("node", op)], runs[("ceiling", op)]
    thr = med([x[0] for x in n]) / med([x[0] for x in c])
    p99 = med([x[2] for x in n]) / med([x[2] for x in c])
    # Each node run directly follows its ceiling run: the per-pair ratio cancels slow drifts of
    # the shared machine better than the ratio of medians.
    pair = med([a[0] / b[0] for a, b in zip(n, c)])
    pair99 = med([a[2] / b[2] for a, b in zip(n, c)])
    print(f"- {op.upper()}: node/ceiling throughput {thr:.2f} (median of per-pair ratios {pair:.2f}), "
          f"p99 {p99:.2f}x (per-pair {pair99:.2f}x)")
    if "baseline" in targets:
        b = runs[("baseline", op)]
        print(f"- {op.upper()}: baseline/ceiling throughput {med([x[0] for x in b]) / med([x[0] for x in c]):.2f} "
              f"(median of per-pair ratios {med([x[0] / y[0] for x, y in zip(b, c)]):.2f})")
        print(f"- {op.upper()}: node/baseline throughput {med([x[0] for x in n]) / med([x[0] for x in b]):.2f} "
              f"(median of per-pair ratios {med([a[0] / x[0] for a, x in zip(n, b)]):.2f}), "
              f"p99 {med([x[2] for x in n]) / med([x[2] for x in b]):.2f}x")
print(f"- node RSS after the runs: {int(rss_kb) / 1024:.0f} MiB with {items} items preloaded")
PY
rm -f "$OUT"
