# Shared helpers for tidegate's shell scripts. Source, don't run.

log() { printf '\033[1;34m[tidegate]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[tidegate] error:\033[0m %s\n' "$*" >&2; exit 1; }

# Where local state (ClickHouse venv and data, spools, certificates) lives.
: "${TIDEGATE_STATE:=${root:-.}/.state}"
export TIDEGATE_STATE
