#!/usr/bin/env bash
# Throughput of the Redis data-type commands (lists, sets, hashes, sorted sets) of ringcache-node
# against redis-server, with redis-benchmark's own tests.
#   bench/types-bench.sh   (env: TESTS="lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,mset"
#                           REPEATS=1 REQUESTS=20000 CLIENTS=50 KEYS=1000 VALUE_SIZE=3 PIPELINES="1 16"
#                           TARGETS="redis ringcache" NODE_BIN= PIN=1 REDIS_PORT=16379 NODE_PORT=17080
#                           NODE_RESP_PORT=16380 MAX_COLLECTION=64Mi)
# Builds release unless NODE_BIN names a binary. Starts redis-server (--save '' --appendonly no)
# and one ringcache-node (--resp-listen, --max-memory 2Gi, --max-collection-size MAX_COLLECTION)
# on 127.0.0.1, pinned to core 0 with redis-benchmark on core 1 (PIN=1, the default on 2+ cores),
# and alternates the targets for each test, per pipeline depth and REPEATS times, each round
# starting from empty servers (FLUSHALL) and running the tests in TESTS order (pops after pushes). Prints medians and ringcache/redis ratios as a Markdown table.
# redis-benchmark's list, set, hash and sorted-set tests each grow ONE key ("mylist", "myset",
# …): with -r KEYS the set, hash and sorted-set members repeat after KEYS, a list grows by one
# element per push. Exits non-zero when a run fails.
set -euo pipefail
cd "$(dirname "$0")/.."

TESTS=${TESTS:-lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,mset}
REPEATS=${REPEATS:-1}
REQUESTS=${REQUESTS:-20000}
CLIENTS=${CLIENTS:-50}
KEYS=${KEYS:-1000}
VALUE_SIZE=${VALUE_SIZE:-3}
PIPELINES=${PIPELINES:-1 16}
TARGETS=${TARGETS:-redis ringcache}
NODE_BIN=${NODE_BIN:-}
MAX_COLLECTION=${MAX_COLLECTION:-64Mi}
REDIS_PORT=${REDIS_PORT:-16379}
NODE_PORT=${NODE_PORT:-17080}
NODE_RESP_PORT=${NODE_RESP_PORT:-16380}

source bench/resp-common.sh
set_pinning
parse_targets redis-server redis-cli redis-benchmark

build_node

declare -A PORT
if [ "$want_redis" = 1 ]; then
  port_free "$REDIS_PORT"
  "${server_cpu[@]}" redis-server --save '' --appendonly no --port "$REDIS_PORT" --bind 127.0.0.1 \
    >"$TMP/redis.log" 2>&1 &
  PIDS+=($!)
  wait_ready redis "$!" "$REDIS_PORT"
  PORT[redis]=$REDIS_PORT
fi
if [ "$want_node" = 1 ]; then
  port_free "$NODE_RESP_PORT"
  RUST_LOG=warn "${server_cpu[@]}" "$NODE_BIN" --listen "127.0.0.1:$NODE_PORT" \
    --resp-listen "127.0.0.1:$NODE_RESP_PORT" --node-id bench --max-memory 2Gi \
    --max-collection-size "$MAX_COLLECTION" >"$TMP/ringcache.log" 2>&1 &
  PIDS+=($!)
  wait_ready ringcache "$!" "$NODE_RESP_PORT"
  PORT[ringcache]=$NODE_RESP_PORT
fi

OUT=$TMP/runs
echo "# target test pipeline ops/s p50_ms p99_ms seconds" >&2
IFS=, read -r -a tests <<<"$TESTS"
for _ in $(seq 1 "$REPEATS"); do
  for pipeline in $PIPELINES; do
    # Each round starts empty; within it the tests run in order on each server (the pops
    # after the pushes), so both see the same sequence.
    for t in "${targets[@]}"; do redis-cli -h 127.0.0.1 -p "${PORT[$t]}" FLUSHALL >/dev/null; done
    for test in "${tests[@]}"; do
      for t in "${targets[@]}"; do
        port=${PORT[$t]}
        t0=$(date +%s.%N)
        if ! csv=$("${client_cpu[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -q --csv -t "$test" \
            -n "$REQUESTS" -r "$KEYS" -d "$VALUE_SIZE" -c "$CLIENTS" -P "$pipeline" 2>"$TMP/bench.err"); then
          echo "redis-benchmark $test against $t failed: $csv" >&2
          cat "$TMP/bench.err" >&2
          exit 1
        fi
        t1=$(date +%s.%N)
        # lrange_100 also reports the LPUSH it fills the list with: keep the test's own line.
        want=${test^^}
        [ "$want" = LRANGE_100 ] && want="LRANGE_100 (first 100 elements)"
        [ "$want" = MSET ] && want="MSET (10 keys)"
        line=$(awk -F'"' -v t="$want" '$2 == t { print $4, $10, $14 }' <<<"$csv")
        if [ -z "$line" ]; then echo "no $test result against $t: $csv" >&2; exit 1; fi
        # A command refused by the server counts as done for redis-benchmark: none may be.
        if grep -q "ERR\|WRONGTYPE" "$TMP/bench.err"; then
          echo "$t answered errors during $test:" >&2; head -3 "$TMP/bench.err" >&2; exit 1
        fi
        echo "$t $test $pipeline $line $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" \
          | tee -a "$OUT" >&2
      done
    done
  done
done

echo "pinned: $PIN; -n $REQUESTS -c $CLIENTS -r $KEYS -d $VALUE_SIZE" >&2
python3 - "$OUT" "$TESTS" "$PIPELINES" <<'PY'
import statistics, sys
path, tests, pipelines = sys.argv[1], sys.argv[2].split(","), [int(p) for p in sys.argv[3].split()]
runs = {}
targets = []
for line in open(path):
    target, test, p, rps, p50, p99, secs = line.split()
    if target not in targets:
        targets.append(target)
    runs.setdefault((target, test, int(p)), []).append(float(rps))
both = "redis" in targets and "ringcache" in targets
head = "| test | " + " | ".join(f"{t} ops/s" for t in targets) + (" | ringcache/redis |" if both else " |")
print(head)
print("|---|" + "---:|" * (len(targets) + (1 if both else 0)))
for p in pipelines:
    for t in tests:
        med = {x: statistics.median(runs[(x, t, p)]) for x in targets if (x, t, p) in runs}
        row = f"| {t} -P {p} | " + " | ".join(f"{med[x]:.0f}" for x in targets if x in med)
        if both and "redis" in med and "ringcache" in med:
            row += f" | {med['ringcache'] / med['redis']:.2f}"
        print(row + " |")
PY
