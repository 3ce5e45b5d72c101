#!/usr/bin/env bash
# Make .venv with nodeagent installed in it (editable), once; later calls only check it is there.
# Usage: scripts/venv.sh [EXTRA]   e.g. scripts/venv.sh test
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
extra="${1:-}"
python="${PYTHON:-python3}"
stamp="$root/.venv/.installed${extra:+-$extra}"
if [ ! -x "$root/.venv/bin/python" ]; then
    "$python" -m venv "$root/.venv"
fi
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    "$root/.venv/bin/pip" install --quiet --upgrade pip
    "$root/.venv/bin/pip" install --quiet -e "$root${extra:+[$extra]}"
    touch "$stamp"
fi
