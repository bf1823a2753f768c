#!/usr/bin/env bash
# End-to-end demo on embedded defaults: installs what is missing, builds cdcr, starts a private
# PostgreSQL (source and target databases) and the embedded Kafka-protocol broker, runs a workload
# on the source, streams its changes with duplicates, late replays and poison messages through
# Kafka, applies them with `cdcr run`, and checks the target against the source.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
source scripts/lib/pg.sh
ensure_deps

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "building cdcr"
mkdir -p .build
swift build >.build/demo-build.log 2>&1 || { tail -40 .build/demo-build.log; exit 1; }
CDCR=$(swift build --show-bin-path)/cdcr

WORK=$(mktemp -d /tmp/cdcr-demo.XXXXXX)
chmod 755 "$WORK"   # the postgres OS user runs the server inside it
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [ -n "${KAFKA_PID:-}" ] && kill "$KAFKA_PID" 2>/dev/null || true
  pg_stop "$WORK/pg"
  rm -rf "$WORK"
}
trap cleanup EXIT

say "starting a private PostgreSQL on 127.0.0.1:$PGPORT"
pg_start "$WORK/pg" "$PGPORT"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres)
"${PSQL[@]}" -c "CREATE DATABASE source" -c "CREATE DATABASE target"
for db in source target; do "${PSQL[@]}" -d "$db" -f ../shared/fixtures/schema.sql; done
SOURCE="postgresql://postgres@127.0.0.1:$PGPORT/source"
TARGET="postgresql://postgres@127.0.0.1:$PGPORT/target"

say "starting the embedded Kafka broker (cdcr dev-kafka)"
"$CDCR" dev-kafka --topic demo.changes --partitions 3 >"$WORK/kafka.out" 2>"$WORK/kafka.err" &
KAFKA_PID=$!
for _ in $(seq 50); do grep -q bootstrap= "$WORK/kafka.out" 2>/dev/null && break; sleep 0.1; done
BROKERS=$(sed -n 's/^bootstrap=//p' "$WORK/kafka.out")
echo "bootstrap=$BROKERS"

say "installing the change log in the source (cdcr source install) and running a workload: 2,000 inserts, 3,000 updates, 300 deletes"
"$CDCR" source install --source "$SOURCE" --tables public.orders
START=$(date -u -d '-5 seconds' +%Y-%m-%dT%H:%M:%SZ)
"${PSQL[@]}" -d source <<'SQL'
SELECT setseed(0.42) \gset
INSERT INTO orders SELECT g, 1000 + g % 97, 'new', round((random() * 500)::numeric, 2), now() - g * interval '1 minute',
       NULL, CASE WHEN g % 10 = 0 THEN 'gift wrap' END, jsonb_build_object('channel', CASE WHEN g % 2 = 0 THEN 'web' ELSE 'app' END),
       gen_random_uuid(), localtimestamp FROM generate_series(1, 2000) g;
DO $$ BEGIN
  FOR i IN 1..3000 LOOP
    UPDATE orders SET status = (ARRAY['paid','packed','shipped'])[1 + i % 3], amount = amount + 1,
           shipped_on = CASE WHEN i % 3 = 2 THEN current_date END WHERE id = 1 + (i * 7919) % 2000;
  END LOOP;
END $$;
DELETE FROM orders WHERE id % 7 = 0 AND id <= 2100;
SQL

say "streaming the change log to Kafka the hard way: 5% lost, 10% duplicated, 501 old changes replayed late by a second producer, 7 poison messages"
# Native events keyed by row (one row stays in one partition), then trouble on top.
"${PSQL[@]}" -d source -At <<'SQL' >"$WORK/events.jsonl"
WITH ev AS (
  SELECT change_id, key, json_build_object('topic','demo.changes','partition',(key->>'id')::int % 3,'key',key,
    'value', json_build_object('change_id', change_id::text, 'table', table_name, 'operation', operation, 'key', key,
                               'data', data, 'timestamp', to_char(committed_at AT TIME ZONE 'UTC','YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'version', change_id)) AS line
  FROM cdcr.change_log)
SELECT line FROM (
  SELECT change_id AS ord, line FROM ev WHERE change_id % 20 <> 7                    -- 5 % never arrive
  UNION ALL SELECT change_id + 0.5, line FROM ev WHERE change_id % 10 = 3            -- duplicates
  -- a late replay of old changes by a second producer (new change IDs, old versions): the guard makes them stale
  UNION ALL SELECT 1e9 + change_id, jsonb_set(line::jsonb, '{value,change_id}', to_jsonb('replay-' || change_id))::json FROM ev WHERE change_id BETWEEN 100 AND 600
) x ORDER BY ord;
SQL
sed -e 's/"cdc.changes"/"demo.changes"/' -e 's/change_id\\": \\"20/change_id\\": \\"poison-20/' ../shared/fixtures/native/poison.jsonl \
  | grep -v '"expect":"applied"' >>"$WORK/events.jsonl"
"$CDCR" dev-produce --brokers "$BROKERS" "$WORK/events.jsonl"

say "applying with cdcr run --stop-when-caught-up"
COUNTS=$("$CDCR" run --brokers "$BROKERS" --topic demo.changes --group demo --target "$TARGET" --stop-when-caught-up --no-gap-fill 2>"$WORK/run.log" | tail -1)
grep -E "applier started|caught up|dead-lettering" "$WORK/run.log" | sed 's/^/  /' | cut -c1-220 || true
echo "outcomes: $COUNTS"

compare() {
  "${PSQL[@]}" -d source -At -c "SELECT coalesce(jsonb_agg(o), '[]') FROM orders o" >"$WORK/source.json"
  "${PSQL[@]}" -d target -At <<SQL
CREATE TEMP TABLE src (j jsonb);
\\copy src FROM '$WORK/source.json' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')
SELECT count(*) FROM (
  (SELECT * FROM orders EXCEPT ALL SELECT r.* FROM src, jsonb_populate_recordset(NULL::orders, src.j) r)
  UNION ALL
  (SELECT r.* FROM src, jsonb_populate_recordset(NULL::orders, src.j) r EXCEPT ALL SELECT * FROM orders)) d;
SQL
}
echo "rows that differ between source and target after the lossy stream: $(compare)"
say "cdcr verify finds them (checksums over key ranges in both databases, then row by row)"
"$CDCR" verify --source "$SOURCE" --target "$TARGET" --table orders --limit 5 || true

say "filling the gap: cdcr replay over the workload's window"
"$CDCR" replay --brokers "$BROKERS" --source "$SOURCE" --target "$TARGET" --from "$START" --to "$(date -u -d '+5 seconds' +%Y-%m-%dT%H:%M:%SZ)"

say "someone edits the target by hand (a row changed, a row deleted): cdcr verify, then cdcr repair --execute"
"${PSQL[@]}" -d target -qc "UPDATE orders SET status = 'edited-by-hand' WHERE id = (SELECT min(id) FROM orders); DELETE FROM orders WHERE id = (SELECT max(id) FROM orders)"
"$CDCR" verify --source "$SOURCE" --target "$TARGET" --table orders || true
"$CDCR" repair --source "$SOURCE" --target "$TARGET" --table orders --execute
"$CDCR" verify --source "$SOURCE" --target "$TARGET" --table orders

say "checking the target against the source"
DIFF=$(compare)
SRC=$("${PSQL[@]}" -d source -At -c "SELECT count(*) FROM orders")
TGT=$("${PSQL[@]}" -d target -At -c "SELECT count(*) FROM orders")
LEDGER=$("${PSQL[@]}" -d target -At -c "SELECT count(*) FROM cdcr.ledger WHERE change_id NOT LIKE 'repair-%'")
CHANGES=$("${PSQL[@]}" -d source -At -c "SELECT count(*) FROM cdcr.change_log")
REPLAYED=$("${PSQL[@]}" -d source -At -c "SELECT count(*) FROM cdcr.change_log WHERE change_id BETWEEN 100 AND 600")
echo "source rows: $SRC   target rows: $TGT   rows that differ: $DIFF"
echo "change IDs in the target's ledger: $LEDGER = $CHANGES source changes + $REPLAYED replayed under new IDs (recorded as stale)"
if [ "$DIFF" = 0 ] && [ "$SRC" = "$TGT" ] && [ "$LEDGER" = $((CHANGES + REPLAYED)) ]; then
  say "target equals source: duplicates skipped, late replays stale, poison dead-lettered to demo.changes.dlq, lost changes replayed"
else
  say "MISMATCH: see $WORK/run.log"; trap - EXIT; exit 1
fi
