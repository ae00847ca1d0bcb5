#!/usr/bin/env bash
# Runs every test: installs the interop peers (idempotent), then the whole test suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash tests/interop/setup.sh
export CHARGECTL_VENV="$root/.venv"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --lib --bins --tests --no-fail-fast "$@"
  # nextest does not run doctests
  cargo test --doc
else
  cargo test --lib --bins --tests --no-fail-fast "$@"
fi
