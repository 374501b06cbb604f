#!/usr/bin/env bash
# End-to-end test of herald against a real Prefect server.
#
# Starts its own throwaway `prefect server start` on a free loopback port,
# runs `herald run` with a heartbeat source against it, reads the events back
# through Prefect's API, stops herald with SIGTERM and reads back its
# `herald.agent.stopped` event and, by count, every event it sent. It does
# this twice: with `transport = "http"` (POST /events) and with
# `transport = "websocket"` (/events/in and its auth frame), each agent
# under its own hostname. Each agent also runs the host, probe (Prefect's own
# /health) and process (a sleep started here, then stopped) sources, whose
# built-in events are read back too. Prints `ok - ...` / `not ok - ...` per check
# and, as its last line, `N passed, M failed`; exits non-zero if any failed.
#
# Environment (all optional):
#   HERALD_BIN               herald binary to test (default: cargo build --release)
#   HERALD_E2E_VENV          venv holding Prefect
#                            (default ${XDG_CACHE_HOME:-$HOME/.cache}/herald/prefect-venv)
#   HERALD_E2E_PREFECT_SPEC  pip requirement for Prefect (default prefect==3.9.1)
#   HERALD_E2E_PYTHON        python used to create the venv (default python3)
#   HERALD_E2E_KEEP=1        keep the temp dir (config, logs, Prefect home)
#
# Needs: python3 with venv support, curl, setsid, and PyPI the first time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHECKER="$ROOT/scripts/e2e-prefect-check.py"
SPEC="${HERALD_E2E_PREFECT_SPEC:-prefect==3.9.1}"
VENV="${HERALD_E2E_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/herald/prefect-venv}"
PYTHON="${HERALD_E2E_PYTHON:-python3}"
HOSTNAME_LABEL="e2e-host"
WS_HOSTNAME_LABEL="e2e-ws-host"
HEALTH_WAIT=120 # seconds for the server to answer /api/health
READ_WAIT=60    # seconds for events to become visible
EXIT_WAIT=30    # seconds for herald to exit after SIGTERM

passed=0
failed=0
finished=0
TMP=""
SERVER_PID=""
HERALD_PID=""
SLEEPER_PID=""

log() { echo "# $*" >&2; }
ok() {
  echo "ok - $*"
  passed=$((passed + 1))
}
not_ok() {
  echo "not ok - $*"
  failed=$((failed + 1))
}

# Prints the last lines of a file to stderr, indented, if it has any.
tail_of() {
  local title="$1" file="$2"
  if [ -s "$file" ]; then
    log "--- last lines of $title ($file) ---"
    tail -n 40 "$file" | sed 's/^/#   /' >&2
  fi
}

stop_herald() {
  [ -n "$HERALD_PID" ] || return 0
  if kill -0 "$HERALD_PID" 2>/dev/null; then
    kill -KILL "$HERALD_PID" 2>/dev/null || true
  fi
  wait "$HERALD_PID" 2>/dev/null || true
  HERALD_PID=""
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  # Started under setsid, so its pid is its process group: signal the group
  # to take down whatever the Prefect CLI spawned too.
  kill -TERM -- "-$SERVER_PID" 2>/dev/null || kill -TERM "$SERVER_PID" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while kill -0 -- "-$SERVER_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
    sleep 0.2
  done
  kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

stop_sleeper() {
  [ -n "$SLEEPER_PID" ] || return 0
  kill -TERM "$SLEEPER_PID" 2>/dev/null || true
  wait "$SLEEPER_PID" 2>/dev/null || true
  SLEEPER_PID=""
}

cleanup() {
  stop_sleeper
  stop_herald
  stop_server
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    if [ "$failed" -gt 0 ]; then
      tail_of "herald stderr" "$TMP/herald.err"
      tail_of "prefect server log" "$TMP/server.log"
    fi
    if [ "${HERALD_E2E_KEEP:-0}" = 1 ]; then
      log "kept $TMP"
    else
      rm -rf "$TMP"
    fi
  fi
}

# Cleans up, prints the summary as the very last line, and exits. From here
# on nothing may stop the cleanup: not a failing command, not a closed pipe.
finish() {
  finished=1
  trap - EXIT
  trap '' PIPE
  set +e
  cleanup
  echo "$passed passed, $failed failed"
  if [ "$failed" -eq 0 ]; then exit 0; else exit 1; fi
}

# shellcheck disable=SC2317 # called by the EXIT trap
on_exit() {
  local rc=$?
  if [ "$finished" = 0 ]; then
    trap '' PIPE
    set +e
    not_ok "e2e script ran to the end (it stopped early with status $rc)"
    finish
  fi
}
trap on_exit EXIT
# Turn signals into an exit so the EXIT trap still stops the server.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# A setup step that failed: nothing after it can be checked.
fatal() {
  not_ok "$*"
  finish
}

# Names of PREFECT_*/HERALD_* variables as `env -u` arguments, so the
# developer's own settings (a Cloud PREFECT_API_URL, an auth string) reach
# neither the server nor herald.
scrub=()
for name in $(compgen -e); do
  case "$name" in
  PREFECT_* | HERALD_* | RUST_LOG) scrub+=(-u "$name") ;;
  esac
done

venv_ready() {
  [ -x "$VENV/bin/prefect" ] && [ "$(cat "$VENV/.herald-e2e-spec" 2>/dev/null)" = "$SPEC" ]
}

ensure_venv() {
  venv_ready && return 0
  mkdir -p "$(dirname "$VENV")"
  (
    # Two runs at once must not build the same venv together.
    if command -v flock >/dev/null; then
      flock 9
      venv_ready && exit 0
    fi
    echo "installing $SPEC into $VENV"
    t0=$SECONDS
    "$PYTHON" -m venv --clear "$VENV" || exit 1
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$SPEC" || exit 1
    echo "$SPEC" >"$VENV/.herald-e2e-spec"
    echo "venv ready in $((SECONDS - t0))s"
  ) 9>"$VENV.lock"
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

healthy() {
  [ "$(curl -fsS --noproxy '*' --max-time 2 "$API/health" 2>/dev/null || true)" = "true" ]
}

# --- setup -----------------------------------------------------------------

TMP="$(mktemp -d "${TMPDIR:-/tmp}/herald-e2e.XXXXXX")"
log "working in $TMP"

if ensure_venv >"$TMP/venv.log" 2>&1; then
  sed 's/^/# /' "$TMP/venv.log" >&2
  ok "Prefect ($SPEC) is installed in $VENV"
else
  tail_of "venv setup" "$TMP/venv.log"
  fatal "Prefect ($SPEC) is installed in $VENV (does '$PYTHON -m venv' work? Debian needs python3-venv)"
fi

if [ -n "${HERALD_BIN:-}" ]; then
  case "$HERALD_BIN" in
  /*) BIN="$HERALD_BIN" ;;
  */*) BIN="$PWD/$HERALD_BIN" ;; # herald runs from the temp dir
  *) BIN="$(command -v "$HERALD_BIN" || echo "$HERALD_BIN")" ;;
  esac
else
  log "building herald (cargo build --release)"
  if ! (cd "$ROOT" && cargo build --release --bin herald) >&2; then
    fatal "herald builds (cargo build --release)"
  fi
  target_dir="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
  BIN="$target_dir/release/herald"
fi
[ -x "$BIN" ] || fatal "herald binary exists at $BIN"

PORT="$(free_port)"
API="http://127.0.0.1:$PORT/api"
log "starting Prefect server at $API"
mkdir -p "$TMP/prefect-home"
(
  cd "$TMP"
  exec env "${scrub[@]}" \
    PREFECT_HOME="$TMP/prefect-home" \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_SERVER_UI_ENABLED=false \
    DO_NOT_TRACK=1 \
    setsid "$VENV/bin/prefect" server start --host 127.0.0.1 --port "$PORT"
) >"$TMP/server.log" 2>&1 </dev/null &
SERVER_PID=$!

t0=$SECONDS
deadline=$((SECONDS + HEALTH_WAIT))
until healthy; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    fatal "Prefect server starts (it exited; see its log above)"
  fi
  if [ $SECONDS -ge $deadline ]; then
    fatal "Prefect server answers $API/health within ${HEALTH_WAIT}s"
  fi
  sleep 0.5
done
ok "Prefect server answers $API/health (after $((SECONDS - t0))s)"

# --- herald ----------------------------------------------------------------

# Writes to $1 a config for an agent named $2 sending with transport $3.
write_config() {
  cat >"$1" <<EOF
[agent]
data_dir = "$TMP/data-$2"
hostname = "$2"

[sink]
type = "http"
url = "$API"
transport = "$3"

[[sources.heartbeat]]
name = "heartbeat"
interval = "1s"

[[sources.file]]
name = "app"
paths = ["$TMP/logs-$2/*.log"]
start_at = "beginning"

[[sources.host]]
name = "host"

[[sources.probe]]
name = "prefect-api"
http = "$API/health"
interval = "1s"

[[sources.process]]
name = "sleepers"
interval = "500ms"
[sources.process.match]
cmdline = '^hsleep-$2 '

[[mappings]]
name = "app-lines"
source = "app"
kind = "line"
event = "e2e.app.line"
resource.id = "e2e.app.$2"
resource.labels = { "prefect.resource.name" = "e2e app", "e2e.file" = "{path | basename}" }
payload = { line = "{line}" }
follows = "auto"
EOF
  mkdir -p "$TMP/logs-$2"
  printf '%s\n' "${APP_LINES[@]}" >"$TMP/logs-$2/app.log"
}

# What the tailed file holds: each line becomes an e2e.app.line event that
# follows the one before.
APP_LINES=("first line" "second line" "third line")

CFG="$TMP/herald.toml"
write_config "$CFG" "$HOSTNAME_LABEL" http
WS_CFG="$TMP/herald-ws.toml"
write_config "$WS_CFG" "$WS_HOSTNAME_LABEL" websocket

# The same config without `url`, which then comes from PREFECT_API_URL.
CFG_ENV="$TMP/herald-env-url.toml"
grep -v '^url = ' "$CFG" >"$CFG_ENV"

herald_env=(env "${scrub[@]}" "NO_PROXY=127.0.0.1,localhost" "no_proxy=127.0.0.1,localhost")

for config in "$CFG" "$WS_CFG"; do
  rc=0
  (cd "$TMP" && "${herald_env[@]}" "$BIN" validate --config "$config") >"$TMP/validate.log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    ok "herald validate --config accepts the e2e config $(basename "$config")"
  else
    not_ok "herald validate --config accepts the e2e config $(basename "$config") (exit status $rc)"
    tail_of "herald validate" "$TMP/validate.log"
  fi
done

rc=0
(cd "$TMP" && "${herald_env[@]}" PREFECT_API_URL="$API" "$BIN" validate --config "$CFG_ENV") \
  >"$TMP/validate-env.log" 2>&1 || rc=$?
if [ "$rc" -eq 0 ]; then
  ok "herald validate accepts a config whose url comes from PREFECT_API_URL"
else
  not_ok "herald validate accepts a config whose url comes from PREFECT_API_URL (exit status $rc)"
  tail_of "herald validate (PREFECT_API_URL)" "$TMP/validate-env.log"
fi

# Runs the read-back checker for the agent named $1 (the other arguments
# go to the checker) and counts its ok / not ok lines.
read_back() {
  local hostname="$1" out line
  shift
  out="$("$VENV/bin/python" "$CHECKER" --api "$API" --hostname "$hostname" \
    --timeout "$READ_WAIT" "$@" 2>&1)" || true
  while IFS= read -r line; do
    case "$line" in
    "ok - "*) ok "${line#ok - }" ;;
    "not ok - "*) not_ok "${line#not ok - }" ;;
    *) echo "$line" >&2 ;;
    esac
  done <<<"$out"
}

# Runs the agent named $2 with config $1 (transport $3, whose start-up line
# must describe its sink as $4): reads its events back while it runs, stops
# it, then reads back its stop event and, by count, every event it sent.
run_agent() {
  local config="$1" hostname="$2" transport="$3" sink="$4" rc sent deadline
  # The process the process source watches: a sleep whose command line
  # starts with a name of its own (argv[0]; its comm stays "sleep").
  (exec -a "hsleep-$hostname" sleep 3600) </dev/null >/dev/null 2>&1 &
  SLEEPER_PID=$!
  log "starting herald run ($transport)"
  (
    cd "$TMP"
    exec "${herald_env[@]}" "$BIN" run --config "$config"
  ) >"$TMP/herald.out" 2>"$TMP/herald.err" </dev/null &
  HERALD_PID=$!

  read_back "$hostname" --phase running --pid "$HERALD_PID" \
    --app-resource "e2e.app.$hostname" --app-lines "${APP_LINES[@]}" \
    --state-sources --probe prefect-api --process-pid "$SLEEPER_PID" --process-name sleep

  stop_sleeper_pid="$SLEEPER_PID"
  stop_sleeper
  read_back "$hostname" --phase exited --process-pid "$stop_sleeper_pid"

  if kill -0 "$HERALD_PID" 2>/dev/null; then
    ok "herald run ($transport) is still running after its events were read back"
  else
    rc=0
    wait "$HERALD_PID" || rc=$?
    HERALD_PID=""
    not_ok "herald run ($transport) is still running after its events were read back (it exited with $rc)"
    finish
  fi

  kill -TERM "$HERALD_PID" 2>/dev/null || true
  deadline=$((SECONDS + EXIT_WAIT))
  while kill -0 "$HERALD_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
    sleep 0.1
  done
  if kill -0 "$HERALD_PID" 2>/dev/null; then
    not_ok "herald ($transport) exits within ${EXIT_WAIT}s of SIGTERM"
    stop_herald
  else
    rc=0
    wait "$HERALD_PID" || rc=$?
    HERALD_PID=""
    if [ "$rc" -eq 0 ]; then
      ok "herald ($transport) exits 0 after SIGTERM"
    else
      not_ok "herald ($transport) exits 0 after SIGTERM (exit status $rc)"
    fi
  fi

  if grep -qF "sink=$sink " "$TMP/herald.err"; then
    ok "herald ($transport) sends with $sink"
  else
    not_ok "herald ($transport) sends with $sink"
  fi
  if grep -q 'AgentStopped.* left_queued=0' "$TMP/herald.err"; then
    ok "herald ($transport) sent everything it queued (left_queued=0)"
  else
    not_ok "herald ($transport) sent everything it queued (left_queued=0)"
  fi
  sent="$(sed -n 's/.*AgentStopped.* events_sent=\([0-9]*\).*/\1/p' "$TMP/herald.err" | tail -n 1)"
  read_back "$hostname" --phase stopped ${sent:+--sent "$sent"} --app-resource "e2e.app.$hostname"
  # Kept for a failure report (cleanup shows herald.err of the last run).
  cp "$TMP/herald.err" "$TMP/herald-$transport.err"
}

run_agent "$CFG" "$HOSTNAME_LABEL" http "POST $API/events"
run_agent "$WS_CFG" "$WS_HOSTNAME_LABEL" websocket "websocket ws://127.0.0.1:$PORT/api/events/in"

finish
