#!/usr/bin/env bash
# Compatibility oracle: redis-py's own test suite against redis-server and against a 3-node RF=2
# ringcache loopback cluster, same run, and a table of the two.
#   compat/redis-py.sh      (env: REDIS_PY_VERSION=6.4.0 FILES="test_commands.py test_pipeline.py"
#                            EXTRA=0 TARGETS="redis ringcache" NODE_BIN= WORK=target/compat
#                            TEST_TIMEOUT=10 RUN_TIMEOUT=2400 PROTOCOL=2 INFO_SHIM=0 FLUSHDB_SHIM=0
#                            LIST=8 NODE_LABEL=<what the table calls the node build>)
# Nothing of redis-py is kept in this repository: its sdist (which ships tests/) is fetched from PyPI
# at run time (`pip download redis==$REDIS_PY_VERSION --no-binary :all: --no-deps`) into $WORK,
# with a venv holding that redis-py and pinned pytest, pytest-timeout, pytest-asyncio, coverage.
# Starts redis-server (Debian's; installed with apt-get when missing, as .ci/run does for
# redis-tools) and three ringcache-node processes (ring file: 1024 partitions, RF=2, all members
# up; --resp-listen each) on free 127.0.0.1 ports, then runs, once per target,
#   pytest tests/<FILES> --redis-url=redis://127.0.0.1:PORT/0 --protocol=$PROTOCOL \
#          -m "not onlycluster and not redismod and not ssl" --timeout=$TEST_TIMEOUT --junit-xml=…
# from the unpacked sdist (ringcache: PORT is the first node's RESP port; it is the first owner of a
# third of the partitions, so most read-modify-write commands and a third of the reads are forwarded). EXTRA=1 adds test_lock.py, test_scripting.py and test_pubsub.py.
# Prints compat/summarize.py's Markdown: per file passed/failed/skipped on each target ("failed"
# counts a failure or error in any phase, fixture teardown included), the tests that pass on
# redis-server and fail on ringcache, the commands ringcache answered "unknown command" to, and
# those tests grouped by reason. Logs, junit XML and the full list (regressions.md) stay in
# $WORK/run/. Builds release ringcache-node unless NODE_BIN names a binary.
# Diagnostics, not the oracle (compat/redis_py_shims.py, loaded only when one is on; the table then
# says so): INFO_SHIM=1 fills INFO fields the conftest reads but the server leaves out (arch_bits,
# cluster_enabled) so the session can start; FLUSHDB_SHIM=1 makes a fixture teardown's FLUSHDB that
# is answered "unknown command" DEL every name the session sent instead, so keys do not leak from
# one test into the next.
# Tracebacks are --tb=native: pytest's own style re-parses the 5000-line test file per frame, which
# makes ~900 failing tests cost 15 minutes of CPU instead of seconds.
# Exits 0 when the run completed, whatever the counts (it measures; it does not gate).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

REDIS_PY_VERSION=${REDIS_PY_VERSION:-6.4.0}
FILES=${FILES:-test_commands.py test_pipeline.py}
if [ "${EXTRA:-0}" = 1 ]; then FILES="$FILES test_lock.py test_scripting.py test_pubsub.py"; fi
TARGETS=${TARGETS:-redis ringcache}
NODE_BIN=${NODE_BIN:-}
WORK=${WORK:-target/compat}
TEST_TIMEOUT=${TEST_TIMEOUT:-10}
RUN_TIMEOUT=${RUN_TIMEOUT:-2400}
PROTOCOL=${PROTOCOL:-2}
INFO_SHIM=${INFO_SHIM:-0}
FLUSHDB_SHIM=${FLUSHDB_SHIM:-0}
LIST=${LIST:-8}
# Test tooling, pinned (versions redis-py 6.4 accepts; coverage only because its pytest config names
# a coverage warning class in filterwarnings).
PINS=(pytest==8.3.5 pytest-timeout==2.3.1 pytest-asyncio==0.24.0 packaging==24.2 coverage==7.6.12)

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
RUN=$WORK/run
rm -rf "$RUN"
mkdir -p "$RUN"

# --- tools --------------------------------------------------------------------------------------
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q && $sudo apt-get install -y -q "${missing[@]}"
fi
command -v python3 >/dev/null || { echo "python3 missing" >&2; exit 1; }

want_redis=0; want_node=0
for t in $TARGETS; do
  case $t in
    redis) want_redis=1 ;;
    ringcache) want_node=1 ;;
    *) echo "TARGETS: unknown target '$t' (known: redis ringcache)" >&2; exit 2 ;;
  esac
done
if [ "$want_node" = 1 ] && [ -z "$NODE_BIN" ]; then
  cargo build --release -q -p ringcache-node --bin ringcache-node
  NODE_BIN=$ROOT/target/release/ringcache-node
fi

# --- redis-py sdist and venv --------------------------------------------------------------------
SRC=$WORK/redis-py-$REDIS_PY_VERSION
VENV=$WORK/venv
stamp="$REDIS_PY_VERSION ${PINS[*]}"
if [ ! -d "$SRC/tests" ]; then
  dl=$WORK/download
  rm -rf "$dl" "$SRC"; mkdir -p "$dl"
  python3 -m pip download -q "redis==$REDIS_PY_VERSION" --no-binary :all: --no-deps -d "$dl"
  mkdir -p "$SRC"
  tar -xzf "$dl/redis-$REDIS_PY_VERSION.tar.gz" -C "$SRC" --strip-components=1
fi
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
  # redis-py itself from the same sdist, so the library and its tests are one version.
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "$SRC"
  echo "$stamp" >"$VENV/.stamp"
fi

# --- servers ------------------------------------------------------------------------------------
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits (30 s at most) until the probe command succeeds; fails at once if PID exits first.
wait_for() { # name pid what probe...
  local name=$1 pid=$2 what=$3 deadline=$((SECONDS + 30))
  shift 3
  until "$@" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited before $what; its log:" >&2
      tail -n 20 "$RUN/$name.server.log" >&2
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then echo "$name: not $what within 30 s" >&2; exit 1; fi
    sleep 0.1
  done
}
pings() { [ "$(redis-cli -h 127.0.0.1 -p "$1" PING 2>/dev/null)" = PONG ]; }
is_ready() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(f"http://{sys.argv[1]}/readyz", timeout=1)' "$1"; }
wait_ping() { wait_for "$1" "$2" "answering PING on port $3" pings "$3"; } # name pid port
wait_ready() { wait_for "$1" "$2" "ready (GET /readyz on $3)" is_ready "$3"; } # name pid http-addr

declare -A URL
if [ "$want_redis" = 1 ]; then
  port=$(free_port)
  # --dir: the suite runs BGSAVE; its dump.rdb goes to the run directory, not the checkout.
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --dir "$RUN" \
    --enable-debug-command local >"$RUN/redis.server.log" 2>&1 &
  PIDS+=($!)
  wait_ping redis "$!" "$port"
  URL[redis]=redis://127.0.0.1:$port/0
fi
if [ "$want_node" = 1 ]; then
  echo "compat-internal-token" >"$RUN/token"
  http=() resp=()
  for i in 0 1 2; do http+=("127.0.0.1:$(free_port)"); resp+=("127.0.0.1:$(free_port)"); done
  python3 - "$RUN/ring.json" "${http[@]}" <<'PY'
import json, sys
path, addrs = sys.argv[1], sys.argv[2:]
n, parts = len(addrs), 1024
# RF=2 over 3 members: partition p is owned by p%3 then (p+1)%3 (balanced: 682 or 683 replicas each).
json.dump({"version": 1, "epoch": 1, "partitions": parts, "replicationFactor": 2, "hash": "xxh3_64",
           "members": [{"id": f"n{i}", "addr": a, "state": "up"} for i, a in enumerate(addrs)],
           "table": [[p % n, (p + 1) % n] for p in range(parts)], "pending": None}, open(path, "w"))
PY
  for i in 0 1 2; do
    RUST_LOG=warn "$NODE_BIN" --listen "${http[$i]}" --resp-listen "${resp[$i]}" --node-id "n$i" \
      --ring-file "$RUN/ring.json" --internal-token-file "$RUN/token" >"$RUN/n$i.server.log" 2>&1 &
    PIDS+=($!)
    node_pid[$i]=$!
  done
  for i in 0 1 2; do
    wait_ready "n$i" "${node_pid[$i]}" "${http[$i]}"
    wait_ping "n$i" "${node_pid[$i]}" "${resp[$i]#*:}"
  done
  URL[ringcache]=redis://${resp[0]}/0
fi

# --- the suite ----------------------------------------------------------------------------------
paths=()
for f in $FILES; do paths+=("tests/$f"); done
plugin=()
if [ "$INFO_SHIM" = 1 ] || [ "$FLUSHDB_SHIM" = 1 ]; then plugin=(-p redis_py_shims); fi
for t in $TARGETS; do
  echo "== pytest against $t (${URL[$t]}): ${paths[*]}" >&2
  set +e
  (cd "$SRC" && PYTHONDONTWRITEBYTECODE=1 INFO_SHIM=$INFO_SHIM FLUSHDB_SHIM=$FLUSHDB_SHIM PYTHONPATH="$ROOT/compat${PYTHONPATH:+:$PYTHONPATH}" timeout -k 10 "$RUN_TIMEOUT" \
     "$VENV/bin/python" -m pytest "${paths[@]}" "${plugin[@]}" \
     --redis-url="${URL[$t]}" --protocol="$PROTOCOL" \
     -m "not onlycluster and not redismod and not ssl" \
     --timeout="$TEST_TIMEOUT" --tb=native -p no:cacheprovider -q -rN --no-header \
     --junit-xml="$RUN/$t.xml" >"$RUN/$t.log" 2>&1)
  echo $? >"$RUN/$t.rc"
  set -e
  tail -n 1 "$RUN/$t.log" >&2
done

shim=""
[ "$INFO_SHIM" = 1 ] && shim="$shim, INFO_SHIM=1"
[ "$FLUSHDB_SHIM" = 1 ] && shim="$shim, FLUSHDB_SHIM=1"
[ -n "$shim" ] && shim="$shim (diagnostic run, not the oracle)"
if [ -z "${NODE_LABEL:-}" ]; then
  NODE_LABEL=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
  git diff --quiet HEAD -- . 2>/dev/null || NODE_LABEL="$NODE_LABEL + uncommitted changes"
  NODE_LABEL="$NODE_LABEL, $NODE_BIN"
fi
echo >&2
echo "redis-py $REDIS_PY_VERSION, files: $FILES, protocol $PROTOCOL, per-test timeout ${TEST_TIMEOUT}s$shim;" \
  "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'); ringcache: $NODE_LABEL"
echo
PYTHONDONTWRITEBYTECODE=1 python3 "$ROOT/compat/summarize.py" "$RUN" --list "$LIST"
echo
echo "logs, junit XML, full list: $RUN" >&2
