# Runs a benchmark (not a test): release build, a private PostgreSQL on a free port, then
# `cdcr bench KIND --target <its admin URL> ARGS…`. Source this file, then: run_bench KIND "$@".
run_bench() {
  local kind=$1; shift
  source scripts/lib/deps.sh
  source scripts/lib/pg.sh
  ensure_deps
  mkdir -p .build
  swift build -c release --product cdcr >.build/bench-build.log 2>&1 || { tail -40 .build/bench-build.log; exit 1; }
  local cdcr port
  cdcr=$(swift build -c release --show-bin-path)/cdcr
  BENCH_WORK=$(mktemp -d /tmp/cdcr-bench.XXXXXX)
  chmod 755 "$BENCH_WORK"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  trap 'pg_stop "$BENCH_WORK/pg"; rm -rf "$BENCH_WORK"' EXIT
  # min_wal_size keeps the WAL segment files the benchmark's warm-up recycles (see warmWAL).
  pg_start "$BENCH_WORK/pg" "$port" "-c min_wal_size=2GB"
  "$cdcr" bench "$kind" --target "postgresql://postgres@127.0.0.1:$port/postgres" "$@"
}
