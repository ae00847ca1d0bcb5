#!/usr/bin/env bash
# Installs the third-party OCPP peers the interop tests run against, idempotently:
# - a Python venv in .venv with the `ocpp` package (which validates every message against the
#   official OCPP 1.6 JSON schemas), used by tests/interop/ocpp_csms.py;
# - the npm package `ocpp-rpc` (strict mode validates against the same schemas) in
#   tests/interop/node_modules, used by tests/interop/ocpp_rpc_csms.js. Needs npm: without it
#   setup fails (the interop tests would fail anyway, naming this script).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

# Python peer.
venv="$root/.venv"
want="ocpp==2.1.0 websockets==15.0.1 aiohttp==3.12.15"
stamp="$venv/.chargectl-requirements"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  :
else
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check $want
  echo "$want" > "$stamp"
fi

# Node peer.
if ! command -v npm >/dev/null 2>&1; then
  echo "setup.sh: npm not found; install Node.js and npm for the ocpp-rpc interop peer" >&2
  exit 1
fi
node_stamp="$here/node_modules/.chargectl-package-lock"
lock_sum=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ -f "$node_stamp" ] && [ "$(cat "$node_stamp")" = "$lock_sum" ] && [ -d "$here/node_modules/ocpp-rpc" ]; then
  exit 0
fi
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
echo "$lock_sum" > "$node_stamp"
