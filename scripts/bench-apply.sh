#!/usr/bin/env bash
# The apply benchmark (not a test): release build, a private PostgreSQL, the embedded broker.
# Extra arguments go to `cdcr bench apply` (e.g. --events 200000 --keys 20000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh
run_bench apply "$@"
