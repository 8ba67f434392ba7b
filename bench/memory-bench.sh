#!/usr/bin/env bash
# Memory per key of ringcache-node against redis-server, holding the same data.
#   bench/memory-bench.sh          (env: KEYS=1000000 VALUE_SIZE=100 TARGETS="redis ringcache"
#                                   NODE_BIN= PIN=1 REDIS_PORT=16389 NODE_PORT=17090
#                                   NODE_RESP_PORT=16390)
# Builds release (skipped when NODE_BIN names a binary, or when TARGETS has no ringcache), starts
# redis-server (--save '' --appendonly no) and ringcache-node (--resp-listen, --max-memory 4Gi, so
# nothing is evicted) on 127.0.0.1, reads each one's VmRSS right after start (the empty baseline),
# loads KEYS keys "key:%012d" with VALUE_SIZE-byte values into each through redis-cli --pipe (one
# generated RESP file, the same bytes for both), checks DBSIZE == KEYS, and prints as a Markdown
# table: RSS, RSS minus the baseline, bytes per key of both, used_memory from INFO memory (redis;
# ringcache's too if its INFO has the field), and ringcache RSS / redis RSS (goal <= 1.0).
# TARGETS="redis" runs redis-server alone. With PIN=1 (default on 2+ cores) the servers run on
# core 0 and redis-cli on core 1, as in resp-bench.sh (the node sizes its thread pool by its cores).
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-1000000}
VALUE_SIZE=${VALUE_SIZE:-100}
TARGETS=${TARGETS:-redis ringcache}
NODE_BIN=${NODE_BIN:-}
REDIS_PORT=${REDIS_PORT:-16389}
NODE_PORT=${NODE_PORT:-17090}
NODE_RESP_PORT=${NODE_RESP_PORT:-16390}

source bench/resp-common.sh
set_pinning
parse_targets redis-server redis-cli

build_node

rss_kb() { # pid
  awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"
}

declare -A PORT SERVER_PID
if [ "$want_redis" = 1 ]; then
  port_free "$REDIS_PORT"
  "${server_cpu[@]}" redis-server --save '' --appendonly no --port "$REDIS_PORT" --bind 127.0.0.1 \
    >"$TMP/redis.log" 2>&1 &
  PIDS+=($!)
  PORT[redis]=$REDIS_PORT; SERVER_PID[redis]=$!
  wait_ready redis "$!" "$REDIS_PORT"
fi
if [ "$want_node" = 1 ]; then
  port_free "$NODE_RESP_PORT"
  RUST_LOG=warn "${server_cpu[@]}" "$NODE_BIN" --listen "127.0.0.1:$NODE_PORT" \
    --resp-listen "127.0.0.1:$NODE_RESP_PORT" --node-id bench --max-memory 4Gi >"$TMP/ringcache.log" 2>&1 &
  PIDS+=($!)
  PORT[ringcache]=$NODE_RESP_PORT; SERVER_PID[ringcache]=$!
  wait_ready ringcache "$!" "$NODE_RESP_PORT"
fi

# SET key:%012d <VALUE_SIZE bytes>, for 0 <= i < KEYS, as RESP.
t0=$(date +%s.%N)
awk -v n="$KEYS" -v size="$VALUE_SIZE" 'BEGIN {
  v = ""; for (j = 0; j < size; j++) v = v "x"
  for (i = 0; i < n; i++) {
    k = sprintf("key:%012d", i)
    printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, size, v
  }
}' >"$TMP/load.resp"
echo "generated $(($(stat -c %s "$TMP/load.resp") / 1048576)) MiB of RESP for $KEYS keys in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s" >&2

OUT=$TMP/results
for t in "${targets[@]}"; do
  port=${PORT[$t]}; pid=${SERVER_PID[$t]}
  empty=$(rss_kb "$pid")
  start=$(date +%s.%N)
  out=$("${client_cpu[@]}" redis-cli -h 127.0.0.1 -p "$port" --pipe <"$TMP/load.resp" 2>&1) || true
  end=$(date +%s.%N)
  if ! grep -q "errors: 0, replies: $KEYS\$" <<<"$out"; then
    echo "load of $t failed: $out" >&2
    exit 1
  fi
  n=$(redis-cli -h 127.0.0.1 -p "$port" DBSIZE)
  if [ "$n" != "$KEYS" ]; then echo "$t: DBSIZE is $n after the load, expected $KEYS" >&2; exit 1; fi
  got=$(redis-cli -h 127.0.0.1 -p "$port" GET "$(printf 'key:%012d' $((KEYS - 1)))" | wc -c)
  if [ "$got" != $((VALUE_SIZE + 1)) ]; then
    echo "$t: GET of the last key gave $((got - 1)) bytes, expected $VALUE_SIZE" >&2
    exit 1
  fi
  loaded=$(rss_kb "$pid")
  used=$( (redis-cli -h 127.0.0.1 -p "$port" INFO memory 2>/dev/null || true) | tr -d '\r' \
    | awk -F: '$1 == "used_memory" { print $2 }')
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  echo "$t: $n keys loaded in $secs s; VmRSS empty $empty kB, loaded $loaded kB; used_memory ${used:--}" >&2
  echo "$t $empty $loaded ${used:--} $secs" >>"$OUT"
done

echo "pinned: $PIN (servers on core 0, redis-cli on core 1); $KEYS keys of $VALUE_SIZE bytes" >&2
python3 - "$OUT" "$KEYS" "$VALUE_SIZE" <<'PY'
import sys
path, keys, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
res = {}
for line in open(path):
    target, empty, loaded, used, secs = line.split()
    res[target] = (int(empty) * 1024, int(loaded) * 1024, None if used == "-" else int(used), float(secs))
mib = lambda b: f"{b / 1048576:.1f}"
print(f"{keys} keys \"key:%012d\" of {size} bytes (raw key + value: {16 + size} bytes a key)\n")
print("| target | RSS empty MiB | RSS loaded MiB | RSS − empty MiB | bytes/key (RSS) | bytes/key (RSS − empty) "
      "| used_memory MiB | bytes/key (used_memory) | load s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for target, (empty, loaded, used, secs) in res.items():
    u = ("—", "—") if used is None else (mib(used), f"{used / keys:.0f}")
    print(f"| {target} | {mib(empty)} | {mib(loaded)} | {mib(loaded - empty)} | {loaded / keys:.0f} | "
          f"{(loaded - empty) / keys:.0f} | {u[0]} | {u[1]} | {secs:.1f} |")
if "redis" in res and "ringcache" in res:
    n, r = res["ringcache"], res["redis"]
    ratio = n[1] / r[1]
    print(f"\n- ringcache RSS / redis RSS: {ratio:.2f} (goal <= 1.0: {'met' if ratio <= 1.0 else 'NOT met'}); "
          f"without the empty baselines: {(n[1] - n[0]) / (r[1] - r[0]):.2f}")
PY
