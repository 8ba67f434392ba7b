# Sourced by bench/resp-bench.sh and bench/memory-bench.sh (from the repository root): which
# targets to run, the processes they start (killed on exit, by PID), a scratch directory for
# logs, and waiting for a RESP server to answer.
# shellcheck shell=bash

# TARGETS ("redis ringcache") into want_redis / want_node; the tools named in "$@" must exist.
parse_targets() {
  read -r -a targets <<<"$TARGETS"
  want_redis=0; want_node=0
  for t in "${targets[@]}"; do
    case "$t" in
      redis) want_redis=1 ;;
      ringcache) want_node=1 ;;
      *) echo "TARGETS: unknown target '$t' (known: redis ringcache)" >&2; exit 2 ;;
    esac
  done
  if [ $((want_redis + want_node)) = 0 ]; then echo "TARGETS is empty" >&2; exit 2; fi
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null; then
      echo "$tool missing: apt-get update && apt-get install -y redis-server redis-tools" >&2
      exit 1
    fi
  done
}

# PIN (unset: 1 on 2+ cores when taskset exists): servers on core 0 (`server_cpu`), the client
# on core 1 (`client_cpu`), so each server gets exactly one core.
set_pinning() {
  if [ -z "${PIN:-}" ]; then
    if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then PIN=1; else PIN=0; fi
  fi
  server_cpu=(); client_cpu=()
  if [ "$PIN" = 1 ]; then server_cpu=(taskset -c 0); client_cpu=(taskset -c 1); fi
}

# NODE_BIN, or a release build of ringcache-node when a target needs the node.
build_node() {
  if [ "$want_node" = 1 ] && [ -z "$NODE_BIN" ]; then
    cargo build --release -q -p ringcache-node --bin ringcache-node
    NODE_BIN=target/release/ringcache-node
  fi
}

PIDS=()
TMP=$(mktemp -d)
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until the server started as PID answers PING on PORT; fails if it exits first or takes
# more than 30 s.
wait_ready() { # name pid port
  local deadline=$((SECONDS + 30))
  until [ "$(redis-cli -h 127.0.0.1 -p "$3" PING 2>/dev/null)" = PONG ]; do
    if ! kill -0 "$2" 2>/dev/null; then
      echo "$1 exited before answering PING on port $3; its log:" >&2
      tail -n 20 "$TMP/$1.log" >&2
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then echo "$1 did not answer PING on port $3 within 30 s" >&2; exit 1; fi
    sleep 0.05
  done
}
port_free() { # port
  if [ "$(redis-cli -h 127.0.0.1 -p "$1" PING 2>/dev/null)" = PONG ]; then
    echo "something already answers PING on 127.0.0.1:$1 (set the *_PORT env knobs)" >&2
    exit 1
  fi
}
