#!/usr/bin/env bash
# The verify benchmark (not a test): release build, a private PostgreSQL, two 1,000,000-row tables.
# Extra arguments go to `cdcr bench verify` (e.g. --rows 200000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
source scripts/lib/pg.sh
ensure_deps
mkdir -p .build
swift build -c release --product cdcr >.build/bench-build.log 2>&1 || { tail -40 .build/bench-build.log; exit 1; }
CDCR=$(swift build -c release --show-bin-path)/cdcr
WORK=$(mktemp -d /tmp/cdcr-bench.XXXXXX)
chmod 755 "$WORK"
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'pg_stop "$WORK/pg"; rm -rf "$WORK"' EXIT
pg_start "$WORK/pg" "$PGPORT"
"$CDCR" bench verify --target "postgresql://postgres@127.0.0.1:$PGPORT/postgres" "$@"
