#!/usr/bin/env bash
# Migration throughput on loopback: ENTRIES (default 1M) 100-byte entries with RF=2 on 3 release nodes,
# scaled out to 4 the way the operator does it; prints a Markdown row.
#   bench/migration-bench.sh [ENTRIES]
# The example binary starts the four nodes itself and stops them (by their handles) when done.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p ringcache-node --bin ringcache-node --example migration_bench
target/release/examples/migration_bench target/release/ringcache-node "${1:-1000000}"
