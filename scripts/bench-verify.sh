#!/usr/bin/env bash
# The verify benchmark (not a test): release build, a private PostgreSQL, two 1,000,000-row tables;
# then one pair per key type compared with reladiff 0.6.0 (pip-installed here when missing) and a
# 10,000,000-row source against an empty target. Extra arguments go to `cdcr bench verify`
# (e.g. --rows 200000 --key-rows 200000 --empty-target-rows 0).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh
if ! command -v reladiff >/dev/null 2>&1; then
  python3 -m pip install --quiet 'reladiff[postgresql]==0.6.0' >&2
fi
run_bench verify --reladiff "$(command -v reladiff)" "$@"
