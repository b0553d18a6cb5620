#!/usr/bin/env bash
# Local ClickHouse (HTTP interface only) for tidegate's demos and tests.
#
#   scripts/clickhouse.sh start    # start in the background (idempotent); prints the URL
#   scripts/clickhouse.sh stop     # SIGTERM, wait, SIGKILL after a timeout (idempotent)
#   scripts/clickhouse.sh status   # exit 0 if running and /ping answers
#   scripts/clickhouse.sh url      # print the URL
#   scripts/clickhouse.sh install  # only create the venv with chdb-core (setup.sh runs it)
#
# Debian's clickhouse-server is too old, so this runs ClickHouse 26.9 embedded
# in chDB (PyPI chdb-core, installed with --no-deps into a venv) through
# scripts/clickhouse_server.py, which opens the real ClickHouse HTTP interface.
#
# Environment:
#   TIDEGATE_STATE     state root (default <repo>/.state); the venv is $TIDEGATE_STATE/venv
#   TIDEGATE_CH_DIR    server dir (default $TIDEGATE_STATE/clickhouse): data/, work/config.xml,
#                      server.log, server.pid
#   TIDEGATE_CH_PORT   HTTP port on 127.0.0.1 (default 8123)
#   TIDEGATE_CH_TCP_PORT  also open the native TCP interface on this port (what the
#                      Distributed tables of a cluster use between nodes); default: none
#   TIDEGATE_CH_CLUSTER  NAME:PORT,PORT,... defines cluster NAME in <remote_servers>: one
#                      shard per native TCP port on 127.0.0.1, in that order (a local
#                      sharded cluster: start one server per port, each with the same value)
#   TIDEGATE_CH_START_TIMEOUT / TIDEGATE_CH_STOP_TIMEOUT  seconds (default 60 / 30)
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHDB_VERSION=26.9.0
CH_HOST=127.0.0.1
CH_PORT="${TIDEGATE_CH_PORT:-8123}"
CH_TCP_PORT="${TIDEGATE_CH_TCP_PORT:-}"
CH_CLUSTER="${TIDEGATE_CH_CLUSTER:-}"
CH_DIR="${TIDEGATE_CH_DIR:-$TIDEGATE_STATE/clickhouse}"
VENV="$TIDEGATE_STATE/venv"
# Absolute paths: the pid file and venv must mean the same thing from any cwd.
[[ "$CH_DIR" == /* ]] || CH_DIR="$PWD/$CH_DIR"
[[ "$VENV" == /* ]] || VENV="$PWD/$VENV"
DATA_DIR="$CH_DIR/data"
WORK_DIR="$CH_DIR/work"
LOG_FILE="$CH_DIR/server.log"
PID_FILE="$CH_DIR/server.pid"
LOCK_FILE="$CH_DIR/.lock"
START_TIMEOUT="${TIDEGATE_CH_START_TIMEOUT:-60}"
STOP_TIMEOUT="${TIDEGATE_CH_STOP_TIMEOUT:-30}"
URL="http://$CH_HOST:$CH_PORT"

if ! [[ "$CH_PORT" =~ ^[0-9]+$ ]] || ((CH_PORT < 1 || CH_PORT > 65535)); then
  die "TIDEGATE_CH_PORT must be a TCP port number, got '$CH_PORT'"
fi
if [[ -n "$CH_TCP_PORT" ]] && { ! [[ "$CH_TCP_PORT" =~ ^[0-9]+$ ]] || ((CH_TCP_PORT < 1 || CH_TCP_PORT > 65535)); }; then
  die "TIDEGATE_CH_TCP_PORT must be a TCP port number, got '$CH_TCP_PORT'"
fi
if [[ -n "$CH_CLUSTER" ]] && ! [[ "$CH_CLUSTER" =~ ^[A-Za-z_][A-Za-z0-9_]*:[0-9]+(,[0-9]+)*$ ]]; then
  die "TIDEGATE_CH_CLUSTER must look like NAME:PORT,PORT,..., got '$CH_CLUSTER'"
fi
EXTRA_ARGS=()
[[ -n "$CH_TCP_PORT" ]] && EXTRA_ARGS+=(--tcp-port "$CH_TCP_PORT")
[[ -n "$CH_CLUSTER" ]] && EXTRA_ARGS+=(--cluster "$CH_CLUSTER")

usage() {
  sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# --- process helpers -------------------------------------------------------

# True if $1 is a live process. A zombie counts as dead only once all its
# threads are gone: a killed multi-threaded server shows its leader as a zombie
# while the other threads still tear down and hold its sockets and files.
pid_alive() {
  local pid="$1" state task
  [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/stat" ]] || return 1
  # Field 3 of /proc/PID/stat is the state; the command name before it may contain spaces.
  state="$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [[ -n "$state" ]] || return 1
  [[ "$state" != Z && "$state" != X ]] && return 0
  for task in "/proc/$pid/task/"*; do
    [[ "${task##*/}" == "$pid" || ! -e "$task" ]] && continue
    return 0
  done
  return 1
}

# True if $1 is a live process running clickhouse_server.py (guards against pid reuse).
is_our_server() {
  pid_alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'clickhouse_server\.py'
}

# Prints the pid of the running server (from the pid file) or fails.
server_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  is_our_server "$pid" || return 1
  echo "$pid"
}

# The --port the running server $1 was started with.
server_port() {
  tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | sed -n '/^--port$/{n;p;q}'
}

ping_ok() {
  [[ "$(curl -fsS -m 2 "$URL/ping" 2>/dev/null)" == "Ok." ]]
}

port_in_use() {
  (exec 3<>"/dev/tcp/$CH_HOST/$CH_PORT") 2>/dev/null
}

# Serialise start/stop on the same server dir (fd 9; not inherited by the server).
take_lock() {
  mkdir -p "$CH_DIR"
  exec 9>"$LOCK_FILE"
  flock -w "$((START_TIMEOUT + STOP_TIMEOUT))" 9 || die "timed out waiting for another clickhouse.sh on $CH_DIR"
}

log_tail() {
  if [[ -s "$LOG_FILE" ]]; then
    printf -- '--- last lines of %s ---\n' "$LOG_FILE" >&2
    tail -n 30 "$LOG_FILE" >&2
    printf -- '---\n' >&2
  fi
}

# --- venv with chdb-core ---------------------------------------------------

venv_ready() {
  [[ -x "$VENV/bin/python" ]] &&
    "$VENV/bin/python" - "$CHDB_VERSION" 2>/dev/null <<'EOF'
import sys
from importlib.metadata import version
sys.exit(0 if version("chdb-core") == sys.argv[1] else 1)
EOF
}

# A python3 >= 3.9 that can create venvs (Debian's needs python3-venv for ensurepip).
pick_python() {
  local py
  for py in /usr/bin/python3 python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null || continue
    if ! "$py" -c 'import venv, ensurepip' 2>/dev/null && [[ "$py" == /usr/bin/python3 ]]; then
      install_python_venv
    fi
    if "$py" -c 'import venv, ensurepip' 2>/dev/null; then
      command -v "$py"
      return 0
    fi
  done
  install_python_venv
  if ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
    die "no python3 (>= 3.9) with the venv module; install Debian's python3 and python3-venv"
  fi
  echo /usr/bin/python3
}

install_python_venv() {
  if ! command -v apt-get >/dev/null 2>&1 || [[ "$(id -u)" != 0 ]]; then
    die "python3's venv module is missing; run: apt-get install python3 python3-venv"
  fi
  log "installing Debian's python3-venv"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
}

ensure_venv() {
  venv_ready && return 0
  # Several launchers may start at once (parallel tests): one builds the venv, the others wait.
  mkdir -p "$TIDEGATE_STATE"
  exec 8>"$TIDEGATE_STATE/venv.lock"
  flock -w 900 8 || die "timed out waiting for another process to build $VENV"
  if venv_ready; then
    exec 8>&-
    return 0
  fi
  local py
  py="$(pick_python)"
  if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
    log "creating venv $VENV ($("$py" --version 2>&1))"
    "$py" -m venv --clear "$VENV"
  fi
  log "installing chdb-core==$CHDB_VERSION (ClickHouse 26.9, ~180 MB download) into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "chdb-core==$CHDB_VERSION" ||
    die "pip install chdb-core==$CHDB_VERSION failed"
  venv_ready || die "chdb-core==$CHDB_VERSION is still not importable from $VENV"
  exec 8>&-
}

# --- commands --------------------------------------------------------------

wait_for_ping() { # $1 = pid; returns 0 once /ping answers, 1 if the process dies or time runs out
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    ping_ok && return 0
    pid_alive "$pid" || return 1
    sleep 0.2
  done
  ping_ok
}

cmd_start() {
  take_lock
  local pid
  if pid="$(server_pid)"; then
    local running_port
    running_port="$(server_port "$pid")"
    if [[ -n "$running_port" && "$running_port" != "$CH_PORT" ]]; then
      die "ClickHouse for $CH_DIR already runs on port $running_port (pid $pid), not $CH_PORT; run '$0 stop' first or unset TIDEGATE_CH_PORT"
    fi
    if wait_for_ping "$pid"; then
      log "ClickHouse already running (pid $pid)"
      echo "$URL"
      return 0
    fi
    log_tail
    die "ClickHouse (pid $pid) is running but $URL/ping does not answer; try: $0 stop"
  fi
  rm -f "$PID_FILE"
  if port_in_use; then
    die "port $CH_PORT on $CH_HOST is already in use by another process (not ours: no live $PID_FILE); set TIDEGATE_CH_PORT to another port"
  fi

  ensure_venv
  mkdir -p "$DATA_DIR" "$WORK_DIR"
  if [[ -f "$LOG_FILE" ]]; then mv -f "$LOG_FILE" "$LOG_FILE.prev"; fi
  printf '%s starting ClickHouse on %s (data %s)\n' "$(date -Is)" "$URL" "$DATA_DIR" >"$LOG_FILE"

  # setsid + nohup: its own session, so it outlives the calling shell and its terminal.
  # In this non-interactive shell the background job is not a group leader, so
  # setsid execs in place and $! is the server's pid.
  setsid nohup "$VENV/bin/python" "$here/clickhouse_server.py" \
    --workdir "$WORK_DIR" --data "$DATA_DIR" --host "$CH_HOST" --port "$CH_PORT" \
    "${EXTRA_ARGS[@]}" </dev/null >>"$LOG_FILE" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"

  if ! wait_for_ping "$pid"; then
    local why="did not answer $URL/ping within ${START_TIMEOUT}s"
    pid_alive "$pid" || why="exited before answering $URL/ping"
    stop_pid "$pid" >/dev/null 2>&1 || true
    rm -f "$PID_FILE"
    log_tail
    die "ClickHouse $why (log: $LOG_FILE)"
  fi
  log "ClickHouse $(curl -fsS -m 5 "$URL/?query=SELECT+version()" 2>/dev/null || echo '?') up at $URL (pid $pid, data $DATA_DIR)"
  echo "$URL"
}

# SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL.
stop_pid() {
  local pid="$1" deadline=$((SECONDS + STOP_TIMEOUT))
  kill -TERM "$pid" 2>/dev/null || true
  while pid_alive "$pid"; do
    if ((SECONDS >= deadline)); then
      log "ClickHouse (pid $pid) still running after ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      local tries=50
      while ((tries-- > 0)); do
        pid_alive "$pid" || return 0
        sleep 0.1
      done
      die "could not kill ClickHouse (pid $pid)"
    fi
    sleep 0.1
  done
}

cmd_stop() {
  take_lock
  local pid
  if ! pid="$(server_pid)"; then
    rm -f "$PID_FILE"
    log "ClickHouse is not running"
    return 0
  fi
  log "stopping ClickHouse (pid $pid)"
  stop_pid "$pid"
  rm -f "$PID_FILE"
  log "ClickHouse stopped"
}

cmd_status() {
  local pid
  if pid="$(server_pid)" && ping_ok; then
    echo "running: $URL (pid $pid, data $DATA_DIR)"
    return 0
  elif [[ -n "${pid:-}" ]]; then
    echo "not answering: pid $pid is alive but $URL/ping fails (log: $LOG_FILE)"
  else
    echo "not running"
  fi
  return 1
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) echo "$URL" ;;
  install) ensure_venv ;;
  *) usage ;;
esac
