#!/usr/bin/env bash
# Idempotent set-up for the web console's build and browser tests (Debian 12, as root):
# Debian's chromium, a Chinese font (the console's 中文 pages), node/npm (Debian's only
# when none is installed), and the npm
# packages of dashboards/ui (esbuild, echarts, world map) and of the browser tests
# (playwright-core, which drives /usr/bin/chromium; it downloads no browser).
#
#   scripts/setup-browser.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need=()
[[ -x /usr/bin/chromium ]] || need+=(chromium)
[[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]] || need+=(fonts-wqy-microhei)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if ((${#need[@]})); then
  log "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# npm ci only when the lockfile changed since the last install (seconds otherwise).
npm_ci() {
  local dir="$1" stamp="$1/node_modules/.tidegate-lock.sha256" want
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return
  fi
  log "npm ci in ${dir#"$root"/}"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
}
npm_ci "$root/dashboards/ui"
npm_ci "$root/testkit/browser"
