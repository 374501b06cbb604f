#!/usr/bin/env bash
# Checks systemd/herald.service without a running systemd: it must pass
# `systemd-analyze verify` (with ExecStart pointed at the binary just
# built, since the unit names its installed path) and
# `systemd-analyze security --offline=true` must rate its exposure at 2.0
# or lower.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin="$(realpath "${HERALD_BIN:-${CARGO_TARGET_DIR:-target}/debug/herald}")"
unit=systemd/herald.service
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

sed "s#/usr/local/bin/herald#$bin#" "$unit" > "$work/herald.service"
systemd-analyze verify "$work/herald.service"
echo "ok - systemd-analyze verify $unit"

score="$(systemd-analyze security --offline=true "$unit" | sed -n 's/.*Overall exposure level for herald.service: \([0-9.]*\).*/\1/p')"
if [ -z "$score" ]; then
  echo "not ok - systemd-analyze security printed no exposure level" >&2
  exit 1
fi
if ! awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
  echo "not ok - exposure $score is above 2.0" >&2
  systemd-analyze security --offline=true "$unit" | grep '✗' >&2
  exit 1
fi
echo "ok - systemd-analyze security --offline=true $unit: exposure $score"
