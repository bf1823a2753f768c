#!/usr/bin/env bash
# Runs every test: unit tests (no server) and integration tests against a private PostgreSQL and an
# embedded Kafka-protocol broker that the tests start themselves. Installs missing packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
ensure_deps
ensure_test_deps
echo "==> building" >&2
mkdir -p .build
if ! swift build --build-tests >.build/test-build.log 2>&1; then
  tail -60 .build/test-build.log >&2
  exit 1
fi
echo "==> testing" >&2
swift test --skip-build "$@"
