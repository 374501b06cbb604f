#!/usr/bin/env bash
# Runs every test: the Rust unit and integration tests, the systemd unit's
# checks (scripts/check-unit.sh), then the end-to-end test against a real
# Prefect server (scripts/e2e-prefect.sh) with the binary that `cargo test`
# just built.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo test
scripts/check-unit.sh
HERALD_BIN="${HERALD_BIN:-${CARGO_TARGET_DIR:-target}/debug/herald}" scripts/e2e-prefect.sh
