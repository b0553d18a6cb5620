#!/usr/bin/env bash
# End-to-end test of scripts/clickhouse.sh (the chDB-based local ClickHouse).
#
#   scripts/tests/clickhouse_launcher_test.sh
#
# Reuses the real venv ($TIDEGATE_STATE/venv, created on first use: ~180 MB
# download) but runs the server on a free non-default port with its data in a
# temporary TIDEGATE_CH_DIR, so it never touches a dev server on 8123.
# Exits non-zero if any check fails; the last line is "N passed, N failed".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
ch="$root/scripts/clickhouse.sh"
export TIDEGATE_STATE="${TIDEGATE_STATE:-$root/.state}"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tidegate-ch-test.XXXXXX")"
export TIDEGATE_CH_DIR="$tmp/clickhouse"
pid_file="$TIDEGATE_CH_DIR/server.pid"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { # a closed port in 20000-29999, starting from one derived from our pid
  local p=$((20000 + $$ % 9000)) n
  for n in $(seq 1 200); do
    port_open "$p" || { echo "$p"; return 0; }
    p=$((p + n))
  done
  return 1
}
TIDEGATE_CH_PORT="$(free_port)"
export TIDEGATE_CH_PORT
url="http://127.0.0.1:$TIDEGATE_CH_PORT"

dummy_pid=""
cleanup() {
  "$ch" stop >/dev/null 2>&1 || true
  if [[ -n "$dummy_pid" ]]; then kill "$dummy_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   - $1"; }
bad() { failed=$((failed + 1)); echo "FAIL - $1${2:+: $2}"; }
# check NAME CMD...: runs CMD, passes if it exits 0.
check() {
  local name="$1"
  shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}
# fails CMD...: CMD exits non-zero (its output discarded).
fails() { ! "$@" >/dev/null 2>&1; }
# expect NAME WANT GOT
expect() {
  if [[ "$3" == "$2" ]]; then ok "$1"; else bad "$1" "want '$2', got '$3'"; fi
}

# SQL over HTTP: POST body; extra args go to curl (e.g. a URL with ?query=).
q() { curl -fsS -m 30 "$url/" --data-binary "$1"; }
post() { curl -fsS -m 30 "$url/?query=$1" --data-binary "@$2"; }
server_pid() { tr -dc '0-9' <"$pid_file" 2>/dev/null; }
alive() { [[ -n "$1" && -d "/proc/$1" ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
row_count() { q "SELECT count() FROM tg_test.flows" 2>/dev/null || echo "?"; }
bytes_sum() { q "SELECT sum(bytes) FROM tg_test.flows" 2>/dev/null || echo "?"; }
wait_gone() { # pid: wait up to 5 s for it to disappear
  local i
  for i in $(seq 1 50); do alive "$1" || return 0; sleep 0.1; done
  return 1
}

echo "# ClickHouse launcher test: port $TIDEGATE_CH_PORT, dir $TIDEGATE_CH_DIR, venv $TIDEGATE_STATE/venv"

# --- before start ---------------------------------------------------------
expect "url prints the URL" "$url" "$("$ch" url)"
check "status fails while stopped" fails "$ch" status
check "stop while stopped succeeds" "$ch" stop

# --- start ------------------------------------------------------------------
t0=$SECONDS
if out="$("$ch" start)"; then ok "start exits 0 ($((SECONDS - t0)) s)"; else bad "start exits 0" "see messages above"; fi
expect "start prints the URL" "$url" "${out:-}"
pid="$(server_pid)"
check "pid file names a live process" alive "$pid"
expect "server runs in its own session (setsid)" "$pid" "$(ps -o sid= -p "${pid:-0}" 2>/dev/null | tr -d ' ')"
expect "/ping answers Ok." "Ok." "$(curl -fsS -m 5 "$url/ping" 2>/dev/null)"
check "status succeeds while running" "$ch" status
version="$(curl -fsS -m 5 "$url/?query=SELECT+version()" 2>/dev/null || true)"
check "version is 26.x ($version)" grep -qE '^26\.[0-9]+' <<<"$version"
check "config.xml listens on 127.0.0.1 only" grep -q '<listen_host>127.0.0.1</listen_host>' "$TIDEGATE_CH_DIR/work/config.xml"
check "data dir is under TIDEGATE_CH_DIR" test -d "$TIDEGATE_CH_DIR/data"

# --- schema and inserts -----------------------------------------------------
check "CREATE DATABASE" q "CREATE DATABASE IF NOT EXISTS tg_test"
check "CREATE TABLE ... ENGINE = MergeTree" q "CREATE TABLE tg_test.flows (
    ts DateTime64(3), src IPv4, dport UInt16, bytes UInt64, proto LowCardinality(String)
  ) ENGINE = MergeTree ORDER BY ts"
expect "table engine is MergeTree" "MergeTree" \
  "$(q "SELECT engine FROM system.tables WHERE database = 'tg_test' AND name = 'flows'" 2>/dev/null)"
check "INSERT ... VALUES (POST)" q "INSERT INTO tg_test.flows VALUES
  ('2024-01-01 00:00:00.001', '10.0.0.1', 443, 100, 'tcp'),
  ('2024-01-01 00:00:00.002', '10.0.0.2', 53, 200, 'udp')"

printf '%s\n' \
  '{"ts":"2024-01-01 00:00:01.000","src":"10.0.0.3","dport":80,"bytes":300,"proto":"tcp"}' \
  '{"ts":"2024-01-01 00:00:02.000","src":"10.0.0.4","dport":22,"bytes":400,"proto":"tcp"}' \
  >"$tmp/rows.jsonl"
check "INSERT ... FORMAT JSONEachRow" post "INSERT+INTO+tg_test.flows+FORMAT+JSONEachRow" "$tmp/rows.jsonl"

# RowBinary, little-endian: DateTime64(3) Int64 ms | IPv4 UInt32 | UInt16 | UInt64 | String (varint length).
# Two rows: 2024-01-01 00:00:03 UTC (1704067203000 ms), 192.168.1.1, 8080, 500, "icmp"
#           2024-01-01 00:00:04 UTC (1704067204000 ms), 192.168.1.2, 8081, 600, "gre"
{
  #       ts                                  src               dport     bytes                               proto
  printf '\xb8\xff\x51\xc2\x8c\x01\x00\x00''\x01\x01\xa8\xc0''\x90\x1f''\xf4\x01\x00\x00\x00\x00\x00\x00''\x04icmp'
  printf '\xa0\x03\x52\xc2\x8c\x01\x00\x00''\x02\x01\xa8\xc0''\x91\x1f''\x58\x02\x00\x00\x00\x00\x00\x00''\x03gre'
} >"$tmp/rows.rowbinary"
check "INSERT ... FORMAT RowBinary" post "INSERT+INTO+tg_test.flows+FORMAT+RowBinary" "$tmp/rows.rowbinary"
expect "RowBinary row decoded" $'2024-01-01 00:00:03.000\t192.168.1.1\t8080\t500\ticmp' \
  "$(q "SELECT * FROM tg_test.flows WHERE proto = 'icmp'" 2>/dev/null)"
expect "6 rows inserted" "6" "$(row_count)"
expect "GET ?query= with default TSV output" $'1\tudp' \
  "$(curl -fsS -m 5 "$url/?query=SELECT+count(),+any(proto)+FROM+tg_test.flows+WHERE+dport=53" 2>/dev/null)"
expect "FORMAT JSONEachRow output" '{"src":"10.0.0.1","dport":443}' \
  "$(q "SELECT src, dport FROM tg_test.flows ORDER BY ts LIMIT 1 FORMAT JSONEachRow" 2>/dev/null)"

# --- concurrency --------------------------------------------------------------
# 8 one-second queries on 8 connections: sequential would take >= 8 s.
start_ns=$(date +%s%N)
for i in $(seq 1 8); do
  curl -fsS -m 30 "$url/" --data-binary "SELECT $i, sleep(1)" >"$tmp/conc.$i" 2>&1 &
done
wait
elapsed_ms=$((($(date +%s%N) - start_ns) / 1000000))
answers="$(cat "$tmp"/conc.* | cut -f1 | sort -n | tr '\n' ' ')"
expect "8 concurrent queries all answer" "1 2 3 4 5 6 7 8 " "$answers"
check "8 concurrent 1-s queries overlap (${elapsed_ms} ms < 4000 ms)" test "$elapsed_ms" -lt 4000

# 4 concurrent inserts of 1000 JSONEachRow rows each.
for i in $(seq 1 1000); do
  printf '{"ts":"2024-01-02 00:00:00","src":"172.16.0.1","dport":%d,"bytes":1,"proto":"bulk"}\n' "$i"
done >"$tmp/bulk.jsonl"
ins_pids=()
for i in 1 2 3 4; do
  post "INSERT+INTO+tg_test.flows+FORMAT+JSONEachRow" "$tmp/bulk.jsonl" >"$tmp/ins.$i" 2>&1 &
  ins_pids+=($!)
done
ins_fail=0
for p in "${ins_pids[@]}"; do
  wait "$p" || ins_fail=$((ins_fail + 1))
done
expect "4 concurrent inserts succeed" "0" "$ins_fail"
expect "4006 rows after concurrent inserts" "4006" "$(row_count)"
total_bytes="$(bytes_sum)"
expect "sum(bytes)" "6100" "$total_bytes"

# --- idempotent start, stop -----------------------------------------------------
t0=$SECONDS
out="$("$ch" start 2>/dev/null)" && rc=0 || rc=$?
expect "second start while running exits 0" "0" "$rc"
expect "second start prints the URL" "$url" "$out"
expect "second start keeps the same server" "$pid" "$(server_pid)"

if "$ch" stop; then ok "stop exits 0"; else bad "stop exits 0"; fi
check "server process is gone" wait_gone "$pid"
check "pid file removed" test ! -e "$pid_file"
check "port is closed" fails port_open "$TIDEGATE_CH_PORT"
check "stop again is fine" "$ch" stop
check "status fails after stop" fails "$ch" status

# --- persistence ----------------------------------------------------------------
t0=$SECONDS
if out="$("$ch" start)"; then ok "restart exits 0 ($((SECONDS - t0)) s)"; else bad "restart exits 0"; fi
expect "rows survive stop/start" "4006" "$(row_count)"
expect "sum(bytes) survives stop/start" "6100" "$(bytes_sum)"
expect "active parts live in the data dir" "1" \
  "$(q "SELECT count() > 0 AND countIf(NOT startsWith(path, '$TIDEGATE_CH_DIR/data/')) = 0
        FROM system.parts WHERE database = 'tg_test' AND table = 'flows' AND active" 2>/dev/null)"

# --- stop falls back to SIGKILL on a hung server; data survives the crash --------
pid="$(server_pid)"
kill -STOP "$pid"
t0=$SECONDS
if TIDEGATE_CH_STOP_TIMEOUT=2 "$ch" stop 2>/dev/null; then ok "stop of a hung server exits 0 ($((SECONDS - t0)) s)"; else bad "stop of a hung server exits 0"; fi
check "hung server was killed" wait_gone "$pid"
check "pid file removed after SIGKILL" test ! -e "$pid_file"
if "$ch" start >"$tmp/after-kill.out" 2>&1; then ok "start after SIGKILL"; else
  bad "start after SIGKILL"
  sed 's/^/    /' "$tmp/after-kill.out"
fi
expect "rows survive SIGKILL" "4006" "$(row_count)"
"$ch" stop >/dev/null 2>&1 || true

# --- a foreign listener on the port is reported, not mistaken for ours ----------
"$TIDEGATE_STATE/venv/bin/python" -m http.server "$TIDEGATE_CH_PORT" --bind 127.0.0.1 >/dev/null 2>&1 &
dummy_pid=$!
for _ in $(seq 1 50); do port_open "$TIDEGATE_CH_PORT" && break; sleep 0.1; done
if "$ch" start >"$tmp/foreign.out" 2>&1; then
  bad "start refuses a port held by another process" "it exited 0"
else
  check "start refuses a port held by another process" grep -q "already in use" "$tmp/foreign.out"
fi
kill "$dummy_pid" 2>/dev/null || true
wait "$dummy_pid" 2>/dev/null || true
dummy_pid=""

cleanup
trap - EXIT
echo "$passed passed, $failed failed"
((failed == 0))
