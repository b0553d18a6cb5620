#!/usr/bin/env bash
# The README's main job, bounded: runs scripts/demo.sh (TIDEGATE_DEMO_SECONDS after it
# printed the dashboard credentials), logs in to the dashboard's API with the printed
# credentials, checks the alerts and violations the demo reports, and checks that the
# demo leaves no namespace, link or process behind.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TIDEGATE_CH_PORT=$(free_port) TIDEGATE_DEMO_UI_PORT=$(free_port)
export TIDEGATE_DEMO_COLLECTOR_PORT=$(free_port) TIDEGATE_DEMO_SECONDS=15
"$root/scripts/demo.sh" >"$work/demo.out" 2>&1 &
demo=$!
fail() { cat "$work/demo.out" >&2; kill -INT "$demo" 2>/dev/null || true; wait "$demo" 2>/dev/null || true; die "demo test: $*"; }

for _ in $(seq 1 1200); do
  grep -q "password:" "$work/demo.out" && break
  kill -0 "$demo" 2>/dev/null || fail "the demo exited before printing the dashboard credentials"
  sleep 0.5
done
grep -q "password:" "$work/demo.out" || fail "no dashboard credentials after 10 minutes"
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
curl -sf -b "$work/cookies" "${url}" | grep -qi "<html" || fail "the dashboard page"

wait "$demo" || fail "the demo exited with $?"
for want in syn_flood port_scan special-isolation sanctioned "dashboard:"; do
  grep -q -- "$want" "$work/demo.out" || fail "the demo's report lacks $want"
done
if ip netns list | grep -q '^tg-demo-wan'; then fail "namespace tg-demo-wan left behind"; fi
if ip link show tgdemo-line >/dev/null 2>&1; then fail "link tgdemo-line left behind"; fi
if pgrep -f "$TIDEGATE_STATE/demo/collector.toml" >/dev/null; then fail "collector left running"; fi
if pgrep -f "http.server 808[12]" >/dev/null; then fail "demo web server left running"; fi
log "demo test passed"
