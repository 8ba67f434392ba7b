#!/usr/bin/env bash
# Redis-protocol (RESP) throughput of ringcache-node against redis-server, with redis-benchmark.
#   bench/resp-bench.sh            (env: REPEATS=3 REQUESTS_P1=600000 REQUESTS_P16=3000000 CLIENTS=50
#                                   KEYS=100000 VALUE_SIZE=100 TARGETS="redis ringcache" NODE_BIN=
#                                   PIN=1 SCALING=auto REDIS_PORT=16379 NODE_PORT=17080
#                                   NODE_RESP_PORT=16380 NODE2_PORT=17081 NODE2_RESP_PORT=16381)
# Builds release (skipped when NODE_BIN names a binary, or when TARGETS has no ringcache), starts
# redis-server (--save '' --appendonly no) and ringcache-node (--resp-listen, --max-memory 2Gi) on
# 127.0.0.1, preloads KEYS keys "key:%012d" of VALUE_SIZE bytes through redis-cli --pipe (the key
# space redis-benchmark's -r KEYS draws key:__rand_int__ from, so every GET hits), then alternates
# targets for each test (SET and GET, at -P 1 and -P 16, -c CLIENTS, -d VALUE_SIZE, -r KEYS),
# REPEATS times, and prints medians and ringcache/redis ratios as a Markdown table. REQUESTS (if set)
# is -n for both pipelines; the defaults give 3–5 s per run against redis-server on one core.
# TARGETS="redis" runs redis-server alone (e.g. to test this script before the node speaks RESP).
# With PIN=1 (default on 2+ cores) every server is pinned to core 0 and redis-benchmark to core 1.
# SCALING=auto (default) adds, when nproc >= 3 and PIN=1, a run of ringcache pinned to cores 0,1
# against ringcache pinned to core 0 (client on core 2, or cores 2,3 with --threads 2 on 4+ cores):
# the 2-core/1-core ratio, goal >= 1.6. SCALING=0 skips it; SCALING=1 forces it (with fewer than
# 3 cores the client then shares core 1 with the server and the ratio means nothing: a dry run).
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS=${REPEATS:-3}
REQUESTS_P1=${REQUESTS_P1:-${REQUESTS:-600000}}
REQUESTS_P16=${REQUESTS_P16:-${REQUESTS:-3000000}}
CLIENTS=${CLIENTS:-50}
KEYS=${KEYS:-100000}
VALUE_SIZE=${VALUE_SIZE:-100}
TARGETS=${TARGETS:-redis ringcache}
NODE_BIN=${NODE_BIN:-}
SCALING=${SCALING:-auto}
REDIS_PORT=${REDIS_PORT:-16379}
NODE_PORT=${NODE_PORT:-17080}
NODE_RESP_PORT=${NODE_RESP_PORT:-16380}
NODE2_PORT=${NODE2_PORT:-17081}
NODE2_RESP_PORT=${NODE2_RESP_PORT:-16381}
NCPU=$(nproc)

source bench/resp-common.sh
set_pinning
parse_targets redis-server redis-cli redis-benchmark

build_node

start_redis() { # name port taskset-prefix...
  local name=$1 port=$2; shift 2
  port_free "$port"
  "$@" redis-server --save '' --appendonly no --port "$port" --bind 127.0.0.1 >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
  wait_ready "$name" "$!" "$port"
}
start_node() { # name http-port resp-port taskset-prefix...
  local name=$1 port=$2 rport=$3; shift 3
  port_free "$rport"
  RUST_LOG=warn "$@" "$NODE_BIN" --listen "127.0.0.1:$port" --resp-listen "127.0.0.1:$rport" \
    --node-id bench --max-memory 2Gi >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
  wait_ready "$name" "$!" "$rport"
}

# The preload as RESP: SET key:%012d <VALUE_SIZE bytes>, for 0 <= i < KEYS.
awk -v n="$KEYS" -v size="$VALUE_SIZE" 'BEGIN {
  v = ""; for (j = 0; j < size; j++) v = v "x"
  for (i = 0; i < n; i++) {
    k = sprintf("key:%012d", i)
    printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, size, v
  }
}' >"$TMP/preload.resp"
preload() { # name port
  local out
  out=$(redis-cli -h 127.0.0.1 -p "$2" --pipe <"$TMP/preload.resp" 2>&1) || true
  if ! grep -q "errors: 0, replies: $KEYS\$" <<<"$out"; then
    echo "preload of $1 failed: $out" >&2
    exit 1
  fi
  check_dbsize "$1" "$2"
}
check_dbsize() { # name port
  local n
  n=$(redis-cli -h 127.0.0.1 -p "$2" DBSIZE)
  if [ "$n" != "$KEYS" ]; then echo "$1: DBSIZE is $n, expected $KEYS" >&2; exit 1; fi
  echo "$1: $n keys" >&2
}

declare -A PORT
if [ "$want_redis" = 1 ]; then start_redis redis "$REDIS_PORT" "${server_cpu[@]}"; PORT[redis]=$REDIS_PORT; fi
if [ "$want_node" = 1 ]; then start_node ringcache "$NODE_PORT" "$NODE_RESP_PORT" "${server_cpu[@]}"; PORT[ringcache]=$NODE_RESP_PORT; fi
for t in "${targets[@]}"; do preload "$t" "${PORT[$t]}"; done

OUT=$TMP/runs
run() { # target port test pipeline client-prefix... [-- extra redis-benchmark args]
  local target=$1 port=$2 test=$3 pipeline=$4 n csv line t0 t1
  shift 4
  local prefix=() extra=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do prefix+=("$1"); shift; done
  if [ $# -gt 0 ]; then shift; extra=("$@"); fi
  if [ "$pipeline" = 1 ]; then n=$REQUESTS_P1; else n=$REQUESTS_P16; fi
  t0=$(date +%s.%N)
  if ! csv=$("${prefix[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -q --csv -t "$test" -n "$n" -r "$KEYS" \
      -d "$VALUE_SIZE" -c "$CLIENTS" -P "$pipeline" "${extra[@]}" 2>"$TMP/bench.err"); then
    echo "redis-benchmark against $target failed: $csv" >&2
    cat "$TMP/bench.err" >&2
    exit 1
  fi
  t1=$(date +%s.%N)
  # A server without CONFIG GET makes redis-benchmark warn; anything else it says is shown.
  grep -v 'Could not fetch server CONFIG' "$TMP/bench.err" >&2 || true
  # "TEST","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  line=$(awk -F'"' -v t="${test^^}" '$2 == t { print $4, $10, $14 }' <<<"$csv")
  if [ -z "$line" ]; then echo "no $test result from redis-benchmark against $target: $csv" >&2; exit 1; fi
  echo "$target $test $pipeline $line $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" | tee -a "$OUT" >&2
}
# Alternates the targets within each test, so slow drifts of the shared machine hit them alike.
bench_all() { # out-file client-prefix... [-- extra args] ; targets and ports from TARGET_LIST/PORT_LIST
  OUT=$1; shift
  for _ in $(seq 1 "$REPEATS"); do
    for pipeline in 1 16; do
      for test in set get; do
        for i in "${!TARGET_LIST[@]}"; do
          run "${TARGET_LIST[$i]}" "${PORT_LIST[$i]}" "$test" "$pipeline" "$@"
        done
      done
    done
  done
}

echo "# target test pipeline ops/s p50_ms p99_ms seconds" >&2
TARGET_LIST=("${targets[@]}")
PORT_LIST=()
for t in "${targets[@]}"; do PORT_LIST+=("${PORT[$t]}"); done
bench_all "$TMP/runs" "${client_cpu[@]}"
for t in "${targets[@]}"; do check_dbsize "$t" "${PORT[$t]}"; done

# Core scaling of ringcache: the same tests against the node on cores 0,1 and the node on core 0.
scaling_note=""
if [ "$want_node" = 0 ]; then
  scaling_note="skipped: TARGETS has no ringcache"
elif [ "$SCALING" = 0 ]; then
  scaling_note="skipped: SCALING=0"
elif [ "$SCALING" = auto ] && [ "$PIN" != 1 ]; then
  scaling_note="skipped: needs PIN=1"
elif [ "$SCALING" = auto ] && [ "$NCPU" -lt 3 ]; then
  scaling_note="skipped: nproc is $NCPU, needs 3 (2 server cores and 1 for redis-benchmark)"
else
  scale_cpus=2; scale_extra=()
  if [ "$NCPU" -ge 4 ]; then scale_cpus=2,3; scale_extra=(-- --threads 2); fi
  if [ "$NCPU" -lt 3 ]; then
    scale_cpus=1
    scaling_note="FORCED on $NCPU cores: redis-benchmark shares core 1 with the 2-core node, the ratio means nothing"
  fi
  start_node ringcache-2core "$NODE2_PORT" "$NODE2_RESP_PORT" taskset -c 0,1
  preload ringcache-2core "$NODE2_RESP_PORT"
  TARGET_LIST=(ringcache ringcache-2core)
  PORT_LIST=("$NODE_RESP_PORT" "$NODE2_RESP_PORT")
  echo "# scaling: node on core 0 vs node on cores 0,1, redis-benchmark on $scale_cpus" >&2
  bench_all "$TMP/scaling" taskset -c "$scale_cpus" "${scale_extra[@]}"
  check_dbsize ringcache-2core "$NODE2_RESP_PORT"
fi

echo "pinned: $PIN (servers on core 0, redis-benchmark on core 1); -c $CLIENTS -d $VALUE_SIZE -r $KEYS" \
  "-n $REQUESTS_P1 (P1) / $REQUESTS_P16 (P16)" >&2
python3 - "$TMP/runs" "$REPEATS" "$TMP/scaling" "$scaling_note" <<'PY'
import os, statistics, sys
path, repeats, scaling_path, scaling_note = sys.argv[1:5]
med = statistics.median

def load(p):
    runs, order = {}, []
    for line in open(p):
        target, test, pipeline, rps, p50, p99, secs = line.split()
        if target not in order:
            order.append(target)
        runs.setdefault((target, test, int(pipeline)), []).append((float(rps), float(p50), float(p99), float(secs)))
    return runs, order

runs, targets = load(path)
tests = [(t, p) for p in (1, 16) for t in ("set", "get")]
head = "| test | " + " | ".join(f"{t} ops/s (median of {repeats}) | {t} p99 ms" for t in targets)
rule = "|---|" + "---:|---:|" * len(targets)
both = "redis" in targets and "ringcache" in targets
if both:
    head += " | ringcache/redis | per-pair median |"
    rule += "---:|---:|"
else:
    head += " |"
print(head)
print(rule)
for test, p in tests:
    row = f"| {test.upper()} -P {p} | "
    row += " | ".join(f"{med([x[0] for x in runs[(t, test, p)]]):.0f} | {med([x[2] for x in runs[(t, test, p)]]):.2f}"
                      for t in targets)
    if both:
        n, r = runs[("ringcache", test, p)], runs[("redis", test, p)]
        # Each ringcache run directly follows its redis run: the per-pair ratio cancels slow
        # drifts of the shared machine better than the ratio of medians.
        row += f" | {med([x[0] for x in n]) / med([x[0] for x in r]):.2f} | {med([a[0] / b[0] for a, b in zip(n, r)]):.2f}"
    print(row + " |")
secs = [x[3] for v in runs.values() for x in v]
print(f"\n- run length: median {med(secs):.1f} s, min {min(secs):.1f} s, max {max(secs):.1f} s")

if os.path.exists(scaling_path):
    s, _ = load(scaling_path)
    print(f"\nCore scaling of ringcache ({scaling_note or 'cores 0,1 vs core 0'}); goal: 2-core/1-core >= 1.6\n")
    print("| test | 1 core ops/s | 2 cores ops/s | 2-core/1-core | per-pair median | goal |")
    print("|---|---:|---:|---:|---:|---|")
    for test, p in tests:
        one, two = s[("ringcache", test, p)], s[("ringcache-2core", test, p)]
        ratio = med([x[0] for x in two]) / med([x[0] for x in one])
        print(f"| {test.upper()} -P {p} | {med([x[0] for x in one]):.0f} | {med([x[0] for x in two]):.0f} | {ratio:.2f} | "
              f"{med([b[0] / a[0] for a, b in zip(one, two)]):.2f} | {'met' if ratio >= 1.6 else 'NOT met'} |")
else:
    print(f"- core scaling (ringcache on cores 0,1 vs core 0): {scaling_note}")
PY
