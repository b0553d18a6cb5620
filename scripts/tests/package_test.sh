#!/usr/bin/env bash
# Builds the Debian packages and checks what an operator gets: the binaries, the
# sandboxed units, the example configurations and the user-creating postinst; the
# packaged binaries run; the units pass systemd-analyze when it is installed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
cd "$root"
rm -f target/debian/*.deb
"$here/package.sh" >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for p in collector probe; do
  deb=$(ls target/debian/tidegate-${p}_*.deb)
  contents=$(dpkg-deb -c "$deb")
  for f in "./usr/bin/tidegate-$p" "./lib/systemd/system/tidegate-$p.service" \
           "./usr/share/doc/tidegate-$p/examples/$p.toml"; do
    grep -q " $f\$" <<<"$contents" || die "$deb lacks $f:\n$contents"
  done
  info=$(dpkg-deb -I "$deb")
  grep -q "Depends:.*adduser" <<<"$info" || die "$deb does not depend on adduser:\n$info"
  dpkg-deb -e "$deb" "$work/$p-control"
  sh -n "$work/$p-control/postinst" || die "$deb: postinst does not parse"
  grep -q "adduser --system" "$work/$p-control/postinst" || die "$deb: postinst creates no user"
  dpkg-deb -x "$deb" "$work/$p-root"
  "$work/$p-root/usr/bin/tidegate-$p" --version >/dev/null || die "packaged tidegate-$p does not run"
  unit="$work/$p-root/lib/systemd/system/tidegate-$p.service"
  grep -q '^NoNewPrivileges=yes' "$unit" || die "$unit: NoNewPrivileges missing"
  grep -q '^CapabilityBoundingSet=' "$unit" || die "$unit: CapabilityBoundingSet missing"
  grep -q '^ProtectSystem=strict' "$unit" || die "$unit: ProtectSystem missing"
  if command -v systemd-analyze >/dev/null; then
    # Everything but the binaries' absence from this host's /usr/bin is a finding.
    out=$(systemd-analyze verify --man=no "$unit" 2>&1 | grep -v "Command /usr/bin/tidegate-$p is not executable" || true)
    [[ -z $out ]] || die "systemd-analyze verify $unit:\n$out"
  fi
done
grep -q '^User=tidegate' "$work/collector-root/lib/systemd/system/tidegate-collector.service" ||
  die "the collector unit does not run as tidegate"
grep -q -- '--user tidegate' "$work/probe-root/lib/systemd/system/tidegate-probe.service" ||
  die "the probe unit does not drop to tidegate"
log "packages OK: $(ls target/debian/*.deb | xargs -n1 basename | tr '\n' ' ')"
