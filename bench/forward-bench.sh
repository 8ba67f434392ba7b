#!/usr/bin/env bash
# Forwarding overhead: GET through a node that owns nothing (one hop to the owner) vs. GET straight
# to the owner, same run, alternating, REPEATS times.
#   bench/forward-bench.sh          (env: REPEATS=3 DURATION=10s CONNS=50 WRK_THREADS=1 KEYS=100000
#                                    BASELINE=path/to/an/older/ringcache-node)
# Two release nodes on 127.0.0.2 / 127.0.0.3 with a ring file (epoch 1, RF=1) in which the second
# node owns every partition; the first forwards every GET to it (coalesced multi-gets, see docs/api.md).
# With BASELINE, that binary runs a second forwarding node ("baseline", 127.0.0.4, also owning
# nothing) and forwarded-by-baseline is measured in the same rounds: the regression check of the
# forwarding path between two builds.
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS=${REPEATS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
WRK_THREADS=${WRK_THREADS:-1}
KEYS=${KEYS:-100000}
EDGE=127.0.0.2:17270
OWNER=127.0.0.3:17270
BASE=127.0.0.4:17270
BASELINE=${BASELINE:-}
export BENCH_KEYS=$KEYS

command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }
cargo build --release -q -p ringcache-node --bin ringcache-node

DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

echo "bench-internal-token" > "$DIR/token"
python3 - "$DIR/ring.json" "$EDGE" "$OWNER" "$BASE" <<'PY'
import json, sys
path, edge, owner, base = sys.argv[1:]
json.dump({"version": 1, "epoch": 1, "partitions": 1024, "replicationFactor": 1, "hash": "xxh3_64",
           "members": [{"id": "edge", "addr": edge, "state": "up"}, {"id": "owner", "addr": owner, "state": "up"},
                       {"id": "baseline", "addr": base, "state": "up"}],
           "table": [[1]] * 1024, "pending": None}, open(path, "w"))
PY
NODES=(edge owner)
[ -n "$BASELINE" ] && NODES+=(baseline)
for id in "${NODES[@]}"; do
  case $id in edge) addr=$EDGE bin=target/release/ringcache-node ;;
              owner) addr=$OWNER bin=target/release/ringcache-node ;;
              baseline) addr=$BASE bin=$BASELINE ;; esac
  RUST_LOG=warn "$bin" --listen "$addr" --node-id "$id" --ring-file "$DIR/ring.json" \
    --internal-token-file "$DIR/token" --max-memory 1Gi &
  PIDS+=($!)
done
ADDRS=("$EDGE" "$OWNER")
[ -n "$BASELINE" ] && ADDRS+=("$BASE")
for addr in "${ADDRS[@]}"; do
  for _ in $(seq 1 100); do curl -fs -o /dev/null "http://$addr/readyz" && break; sleep 0.1; done
done

python3 - "$OWNER" "$KEYS" <<'PY'
import json, sys, urllib.request
addr, keys = sys.argv[1], int(sys.argv[2])
for start in range(0, keys, 1000):
    ops = [{"op": "set", "key": f"key:{i}", "value": "v" * 100} for i in range(start, min(start + 1000, keys))]
    req = urllib.request.Request(f"http://{addr}/v1/batch", data=json.dumps({"ops": ops}).encode(), method="POST")
    with urllib.request.urlopen(req) as r:
        assert all(x["status"] == 204 for x in json.load(r)["results"])
PY

OUT=$(mktemp)
run() {
  local line
  line=$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" -s bench/lua/get.lua "http://$2" | grep '^RESULT')
  echo "$1 get $line" | tee -a "$OUT" >&2
}
for _ in $(seq 1 "$REPEATS"); do
  run direct "$OWNER"
  run forwarded "$EDGE"
  if [ -n "$BASELINE" ]; then run baseline "$BASE"; fi
done
python3 - "$OUT" "$REPEATS" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    target, _, _, rps, p50, p99, st, so = line.split()
    runs.setdefault(target, []).append((float(rps), float(p50), float(p99), int(st), int(so)))
med = statistics.median
print(f"| GET | ops/s (median of {sys.argv[2]}) | p50 µs | p99 µs | non-2xx / socket errors |")
print("|---|---:|---:|---:|---:|")
for t in [t for t in ("direct", "forwarded", "baseline") if t in runs]:
    r = runs[t]
    print(f"| {t} | {med([x[0] for x in r]):.0f} | {med([x[1] for x in r]):.0f} | {med([x[2] for x in r]):.0f} | "
          f"{sum(x[3] for x in r)} / {sum(x[4] for x in r)} |")
pair = med([a[0] / b[0] for a, b in zip(runs["forwarded"], runs["direct"])])
print(f"\n- forwarded/direct throughput {med([x[0] for x in runs['forwarded']]) / med([x[0] for x in runs['direct']]):.2f} "
      f"(median of per-pair ratios {pair:.2f})")
if "baseline" in runs:
    b = med([a[0] / x[0] for a, x in zip(runs["baseline"], runs["direct"])])
    print(f"- forwarded by the baseline build/direct {med([x[0] for x in runs['baseline']]) / med([x[0] for x in runs['direct']]):.2f} "
          f"(per-pair {b:.2f}); this build/baseline {med([x[0] for x in runs['forwarded']]) / med([x[0] for x in runs['baseline']]):.2f}")
PY
rm -f "$OUT"
