#!/usr/bin/env bash
# Benchmarks of docs/benchmarks.md. Needs wrk (apt-get install wrk) and python3.
# Usage: docs/bench.sh [workdir]   (default /tmp/pawtropolis-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pawtropolis-target}"
WORK="${1:-/tmp/pawtropolis-bench}"
GUILD=424242424242424242
OTHER=123456789012345678
NOW=1761004800
PORT=3907
mkdir -p "$WORK"
cargo build --release -q -p pawtropolis-server
BIN="$CARGO_TARGET_DIR/release/pawtropolis-server"
export PAWTROPOLIS_DATABASE_URL="sqlite://$WORK/bench.db?mode=rwc"

FRESH=0
if [ ! -f "$WORK/bench.db" ]; then
  FRESH=1
  echo "== demo-data: 1,000,000 rows (700,000 in one guild) over 120 days"
  time "$BIN" --now $NOW demo-data --rows 700000 --guild $GUILD --days 120 2>/dev/null
  time "$BIN" --now $NOW demo-data --rows 300000 --guild $OTHER --days 120 --seed 9 2>/dev/null
fi
TOKEN=$("$BIN" token create --guild $GUILD --name bench 2>/dev/null | tail -1)

# 50 cached identities to resolve.
IDS=$(python3 - "$WORK/bench.db" $GUILD <<'PY'
import sqlite3, sys
db, guild = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db)
ids = [str(697169405422862417 + i * 1000003) for i in range(50)]
h = "0123456789abcdef0123456789abcdef"
for i, u in enumerate(ids):
    c.execute("INSERT OR REPLACE INTO user_cache (user_id, guild_id, username, global_name, display_name, avatar_hash, avatar_url, updated_at) "
              "VALUES (?,?,?,?,?,?,?,datetime('now'))",
              (u, guild, f"user{i}", f"User {i}", f"Nick {i}", h, f"https://cdn.discordapp.com/avatars/{u}/{h}.png?size=128"))
# The demo moderators get cached identities too, for the ?expand=identity figures.
mods = [r[0] for r in c.execute("SELECT DISTINCT actor_id FROM action_log WHERE guild_id = ? AND action = 'claim'", (guild,))]
for i, u in enumerate(mods):
    c.execute("INSERT OR REPLACE INTO user_cache (user_id, guild_id, username, global_name, display_name, avatar_hash, avatar_url, updated_at) "
              "VALUES (?,?,?,?,?,?,?,datetime('now'))",
              (u, guild, f"mod{i}", f"Mod {i}", f"Moderator {i}", h, f"https://cdn.discordapp.com/avatars/{u}/{h}.png?size=128"))
c.commit()
print(",".join(ids))
PY
)

RUST_LOG=info,sqlx=warn PAWTROPOLIS_METRICS_CACHE_SECS=0 PAWTROPOLIS_RESOLVE_RATE_PER_MIN=0 PAWTROPOLIS_NOW=$NOW \
  "$BIN" serve --bind 127.0.0.1:$PORT > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
# The derived metrics tables are brought up to date at start; wait for that first pass (logged
# only when it had many rows to count, i.e. on a new database: a rerun finds them current).
if [ $FRESH = 1 ]; then
  for _ in $(seq 1 120); do grep -q "metrics tables brought up to date" "$WORK/serve.log" && break; sleep 0.5; done
fi
AUTH="Authorization: Bearer $TOKEN"
B="http://127.0.0.1:$PORT/api"

echo "== GET /api/logs?limit=50, one connection (latency)"
wrk -t1 -c1 -d10s --latency -H "$AUTH" "$B/logs?guild_id=$GUILD&limit=50" | grep -E "50%|90%|99%|Requests/sec"

echo "== GET /api/logs?limit=50&expand=identity, one connection (all identities cached)"
wrk -t1 -c1 -d10s --latency -H "$AUTH" "$B/logs?guild_id=$GUILD&limit=50&expand=identity" | grep -E "50%|90%|99%|Requests/sec"

echo "== GET /api/users/resolve, 50 cached ids, 64 connections (throughput)"
wrk -t2 -c64 -d10s --latency -H "$AUTH" "$B/users/resolve?guild_id=$GUILD&ids=$IDS" | grep -E "50%|99%|Requests/sec|Non-2xx"

echo "== GET /api/metrics/timeseries 90d/1h, uncached, one connection"
wrk -t1 -c1 -d10s --latency -H "$AUTH" "$B/metrics/timeseries?guild_id=$GUILD&window=90d&bucket=1h" | grep -E "50%|90%|99%|Requests/sec"

echo "== GET /api/metrics/latency 90d/1d, uncached, one connection"
wrk -t1 -c1 -d10s --latency -H "$AUTH" "$B/metrics/latency?guild_id=$GUILD&window=90d&bucket=1d" | grep -E "50%|90%|99%|Requests/sec"

# The live stream's load test runs without the server above (it starts the API itself).
kill $SERVER 2>/dev/null || true
cargo build --release -q -p pawtropolis-tests --bin sse_bench
SSE="$CARGO_TARGET_DIR/release/sse_bench"
# Each process holds a file descriptor per stream.
STREAMS=10000
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((STREAMS + 500)) ]; then
  STREAMS=$(( $(ulimit -n) - 500 ))
  echo "== ulimit -n is $(ulimit -n): the stream runs use $STREAMS streams"
fi
for n in 1000 3000 5000 $STREAMS; do
  echo "== live stream, $n streams, 20 events/s: raw floor, then the recorder"
  "$SSE" --clients $n --events 200 --rate 20 --front raw 2>/dev/null | tail -1
  "$SSE" --clients $n --events 200 --rate 20 --mode recorder 2>/dev/null | tail -1
done
echo "== live stream, $STREAMS streams: rows from another process; poem's server for everything"
"$SSE" --clients $STREAMS --events 200 --rate 20 --mode database 2>/dev/null | tail -1
"$SSE" --clients $STREAMS --events 200 --rate 20 --mode recorder --front hyper 2>/dev/null | tail -1
echo "== live stream, $STREAMS streams over 10 and 100 guilds"
for g in 10 100; do
  "$SSE" --clients $STREAMS --events 200 --rate 20 --mode recorder --guilds $g 2>/dev/null | tail -1
done
if [ -n "${PAWTROPOLIS_TEST_POSTGRES_URL:-}" ]; then
  echo "== live stream on PostgreSQL, $STREAMS streams"
  for mode in recorder database; do
    "$SSE" --clients $STREAMS --events 200 --rate 20 --mode $mode --postgres "$PAWTROPOLIS_TEST_POSTGRES_URL" 2>/dev/null | tail -1
  done
fi
