#!/usr/bin/env bash
# The README's main job, as a new user meets it, twice:
#
# 1. Bounded (TIDEGATE_DEMO_SECONDS): logs in to the dashboard's API with the printed
#    credentials, checks the alerts and violations the demo reports at the end, that every
#    flow record the probe exported is in ClickHouse, and that this host's own addresses
#    and routes are byte-identical before, during and after the demo.
# 2. Stopped with SIGINT to its process group (Ctrl-C in a terminal): a clean stop within
#    10 s, in pipeline order, with every record the probe saw stored.
#
# Both check that the demo leaves no namespace, link or process behind.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# This host's network as the demo must leave it (address lifetimes count down: not compared).
host_net() {
  ip -o addr show | sed -E 's/ (valid|preferred)_lft [^ ]+//g'
  ip route show table all
  ip -6 route show table all 2>/dev/null | sed -E 's/ expires [^ ]+//g'
  ip link show | grep -v 'link/'
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
demo=""
fail() {
  cat "$work/demo.out" >&2 || true
  if [[ -n "$demo" ]]; then
    kill -TERM -- "-$demo" 2>/dev/null || true
    for _ in $(seq 1 600); do kill -0 "$demo" 2>/dev/null || break; sleep 0.1; done
  fi
  die "demo test: $*"
}
start_demo() { # seconds (empty: until interrupted)
  export TIDEGATE_CH_PORT=$(free_port) TIDEGATE_DEMO_UI_PORT=$(free_port)
  export TIDEGATE_DEMO_COLLECTOR_PORT=$(free_port) TIDEGATE_DEMO_SECONDS="$1"
  export TIDEGATE_DEMO_COLLECTOR_METRICS_PORT=$(free_port) TIDEGATE_DEMO_PROBE_METRICS_PORT=$(free_port)
  # Started as a terminal starts it: a session of its own (SIGINT to its process group
  # reaches only it) and SIGINT not ignored (a script's background job starts with SIGINT
  # ignored, and bash cannot trap a signal that was ignored when it started).
  python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.setsid()
os.execvp(sys.argv[1], sys.argv[1:])' "$root/scripts/demo.sh" >"$work/demo.out" 2>&1 &
  demo=$!
  for _ in $(seq 1 1200); do
    grep -q "password:" "$work/demo.out" && return 0
    kill -0 "$demo" 2>/dev/null || fail "the demo exited before printing the dashboard credentials"
    sleep 0.5
  done
  fail "no dashboard credentials after 10 minutes"
}
check_left_nothing() {
  for ns in tg-demo-home tg-demo-wan; do
    if ip netns list | grep -q "^$ns"; then fail "namespace $ns left behind"; fi
  done
  if pgrep -f "$TIDEGATE_STATE/demo/collector.toml" >/dev/null; then fail "collector left running"; fi
  if pgrep -f "http.server .* --directory $TIDEGATE_STATE/demo" >/dev/null; then fail "demo web server left running"; fi
  if pgrep -f "socat TCP-LISTEN:$TIDEGATE_DEMO_UI_PORT" >/dev/null; then fail "forwarder left running"; fi
}
check_records_stored() {
  local line exported stored
  line=$(grep "flow records: the probe exported" "$work/demo.out") || fail "no flow-record accounting at the end"
  exported=$(sed -E 's/.*exported ([0-9?]+), ClickHouse holds ([0-9?]+).*/\1/' <<<"$line")
  stored=$(sed -E 's/.*exported ([0-9?]+), ClickHouse holds ([0-9?]+).*/\2/' <<<"$line")
  [[ "$exported" =~ ^[0-9]+$ && "$exported" -gt 0 && "$exported" == "$stored" ]] ||
    fail "records lost: $line"
}

log "demo test 1: bounded run; the host's network before, during and after"
host_net >"$work/net.before"
start_demo 15
host_net >"$work/net.during"
url=$(awk '/dashboard:/ {print $2}' "$work/demo.out")
user=$(awk '/user:/ {print $2}' "$work/demo.out")
password=$(awk '/password:/ {print $2}' "$work/demo.out")
[[ "$url" == "http://127.0.0.1:$TIDEGATE_DEMO_UI_PORT/" ]] || fail "dashboard URL $url"
code=$(curl -s -o /dev/null -w '%{http_code}' "${url}api/v1/alerts")
[[ "$code" == 401 ]] || fail "the API answered $code without credentials"
curl -sf -c "$work/cookies" -H 'content-type: application/json' \
  -d "{\"user\":\"$user\",\"password\":\"$password\"}" "${url}api/v1/login" >/dev/null ||
  fail "login with the printed credentials failed"
curl -sf -b "$work/cookies" "${url}api/v1/alerts" >"$work/alerts.json" || fail "alerts API"
grep -q syn_flood "$work/alerts.json" || fail "the dashboard API lists no SYN flood: $(head -c 500 "$work/alerts.json")"
# Whole answers to files first: `curl | grep -q` fails under pipefail when grep stops
# reading before curl has written everything (SIGPIPE).
curl -sf -b "$work/cookies" "${url}" -o "$work/page.html" || fail "the dashboard page"
grep -qi "<html" "$work/page.html" || fail "the dashboard page is not HTML"
curl -sf "http://127.0.0.1:$TIDEGATE_DEMO_COLLECTOR_METRICS_PORT/metrics" -o "$work/metrics.txt" ||
  fail "the collector's metrics through the forwarder (curl exit $?)"
grep -q tidegate_collector "$work/metrics.txt" || fail "the collector's metrics page: $(head -c 300 "$work/metrics.txt")"
wait "$demo" || fail "the demo exited with $?"
demo=""
host_net >"$work/net.after"
for when in during after; do
  diff -u "$work/net.before" "$work/net.$when" >&2 || fail "the host's addresses, routes or links changed $when the demo"
done
for want in syn_flood port_scan special-isolation sanctioned "dashboard:" "alerts (tidegate.alerts, final state)"; do
  grep -q -- "$want" "$work/demo.out" || fail "the demo's report lacks $want"
done
check_records_stored
check_left_nothing

log "demo test 2: Ctrl-C (SIGINT to the demo's process group) stops it cleanly within 10 s"
start_demo ""
sleep 5
t0=$(date +%s.%N)
kill -INT -- "-$demo"
for _ in $(seq 1 200); do
  kill -0 "$demo" 2>/dev/null || break
  sleep 0.1
done
t1=$(date +%s.%N)
kill -0 "$demo" 2>/dev/null && fail "the demo still runs 20 s after SIGINT"
wait "$demo" 2>/dev/null || true
demo=""
took=$(python3 -c "print(round($t1 - $t0, 1))")
python3 -c "import sys; sys.exit(0 if $t1 - $t0 < 10 else 1)" || fail "stopping took ${took} s (limit 10 s)"
grep -q "unacknowledged batches stay spooled" "$TIDEGATE_STATE/demo/probe.log" && fail "the probe left batches unacknowledged"
check_records_stored
check_left_nothing
log "demo test passed (SIGINT stop took ${took} s)"
