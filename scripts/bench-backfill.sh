#!/usr/bin/env bash
# The backfill benchmark (not a test): release build, a private PostgreSQL, a 5,000,000-row source
# table copied into an empty target, against a psql COPY pipe in the same run.
# Extra arguments go to `cdcr bench backfill` (e.g. --rows 1000000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh
run_bench backfill "$@"
