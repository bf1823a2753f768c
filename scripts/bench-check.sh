#!/usr/bin/env bash
# The check benchmark (not a test): release build, a private PostgreSQL, the verify benchmark's two
# 1,000,000-row tables. Extra arguments go to `cdcr bench check` (e.g. --rows 200000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh
run_bench check "$@"
