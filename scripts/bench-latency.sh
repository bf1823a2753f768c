#!/usr/bin/env bash
# The latency benchmark (not a test): release build, a private PostgreSQL, the embedded broker;
# send → write latency at steady rates. Extra arguments go to `cdcr bench latency`
# (e.g. --rates 1000 5000 --seconds 10).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh
run_bench latency "$@"
