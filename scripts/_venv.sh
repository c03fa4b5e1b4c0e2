# Sourced by the set-up scripts: make .venv (installing python3-venv from Debian if needed) and install sluice.
# Usage: source scripts/_venv.sh EXTRAS   (EXTRAS is "" or "[test]")
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    if ! "$PY" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
        "$PY" -m venv .venv
    fi
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".$1"
# Byte-compile sluice as pip does for a regular install (an editable one skips it): with
# PYTHONDONTWRITEBYTECODE set, every process would otherwise compile the sources again at import.
.venv/bin/python -m compileall -q src/sluice >/dev/null
