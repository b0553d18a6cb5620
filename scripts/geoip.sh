#!/usr/bin/env bash
# Installs the GeoLite2-City database (July 2018) used by the enrichment tests and demo.
#
#   scripts/geoip.sh     # idempotent; prints the database path
#
# The database comes from the PyPI sdist maxminddb-geolite2==2018.703, which carries a
# real GeoLite2-City.mmdb (CC BY-SA 4.0, MaxMind). It is fetched with pip (registry only)
# and extracted to $TIDEGATE_STATE/geoip/GeoLite2-City.mmdb.
#
# Environment:
#   TIDEGATE_STATE   state root (default <repo>/.state)
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PKG=maxminddb-geolite2
VERSION=2018.703
GEOIP_DIR="$TIDEGATE_STATE/geoip"
[[ "$GEOIP_DIR" == /* ]] || GEOIP_DIR="$PWD/$GEOIP_DIR"
DB="$GEOIP_DIR/GeoLite2-City.mmdb"

# A valid MaxMind DB ends with its metadata section, marked by this byte string.
db_ok() {
  [[ -s "$1" ]] && tail -c 200000 "$1" | grep -aq $'\xab\xcd\xefMaxMind.com'
}

if db_ok "$DB"; then
  echo "$DB"
  exit 0
fi

mkdir -p "$GEOIP_DIR"
# Parallel callers (tests): one downloads, the others wait and reuse the result.
exec 9>"$GEOIP_DIR/.lock"
flock -w 600 9 || die "timed out waiting for another geoip.sh on $GEOIP_DIR"
if db_ok "$DB"; then
  echo "$DB"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || die "python3 is missing; run scripts/setup.sh"
PIP=(python3 -m pip)
if ! "${PIP[@]}" --version >/dev/null 2>&1; then
  # Debian's python3 has no pip; the ClickHouse venv (scripts/clickhouse.sh install) has one.
  [[ -x "$TIDEGATE_STATE/venv/bin/python" ]] || "$here/clickhouse.sh" install
  PIP=("$TIDEGATE_STATE/venv/bin/python" -m pip)
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
log "downloading $PKG==$VERSION (GeoLite2-City, July 2018) from PyPI"
"${PIP[@]}" download -q --disable-pip-version-check --no-deps --no-binary :all: \
  "$PKG==$VERSION" -d "$tmp" || die "pip download $PKG==$VERSION failed"
sdist="$(find "$tmp" -maxdepth 1 -name "$PKG-$VERSION.tar.gz" -print -quit)"
[[ -n "$sdist" ]] || die "pip did not produce $PKG-$VERSION.tar.gz in $tmp"
tar -tzf "$sdist" >"$tmp/members" || die "$sdist is not a readable tar.gz"
member="$(grep -m1 '/GeoLite2-City\.mmdb$' "$tmp/members")" ||
  die "$sdist has no GeoLite2-City.mmdb"
tar -xzf "$sdist" --no-same-owner -C "$tmp" "$member"
db_ok "$tmp/$member" || die "$member in $sdist is not a MaxMind DB"
mv -f "$tmp/$member" "$DB.tmp"
mv -f "$DB.tmp" "$DB"
log "GeoLite2-City installed at $DB"
echo "$DB"
