#!/usr/bin/env bash
# Installs the third-party OCPP peers the interop tests run against, idempotently:
# a Python venv in .venv with the `ocpp` package (which validates every message against the
# official OCPP 1.6 JSON schemas).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/.venv"
want="ocpp==2.1.0 websockets==15.0.1 aiohttp==3.12.15"
stamp="$venv/.chargectl-requirements"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check $want
echo "$want" > "$stamp"
