#!/usr/bin/env bash
# Builds the Debian packages of the probe and the collector (cargo-deb): the binaries,
# sandboxed systemd units (packaging/systemd/), example configurations, and a postinst
# that creates the unprivileged `tidegate` user. Packages land in target/debian/.
#
#   scripts/package.sh
#
# An operator then installs them with
#   apt install ./target/debian/tidegate-collector_*.deb ./target/debian/tidegate-probe_*.deb
# puts collector.toml / probe.toml (and certificates) in /etc/tidegate/, and runs
#   systemctl enable --now tidegate-collector    # or tidegate-probe on the edge hosts
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
setup_toolchain
export PATH="$HOME/.cargo/bin:$PATH"
if [[ "$(cargo deb --version 2>/dev/null)" != *"3.8.0"* ]]; then
  log "installing cargo-deb"
  cargo install --locked cargo-deb@3.8.0 >/dev/null
fi
cargo build --release --locked -p tidegate-probe -p tidegate-collector
for p in tidegate-collector tidegate-probe; do
  cargo deb --no-build --no-strip -p "$p" >/dev/null
done
ls -1 target/debian/*.deb
