#!/usr/bin/env bash
# Run nodeagent from this checkout, installing it into .venv first if needed.
#   sudo scripts/nodeagent.sh run                        the agent, with its embedded defaults
#   scripts/nodeagent.sh plan examples/memory-demo.yaml  what the kubelet would write for a pod
# `run` also installs what the default runtime needs (Debian's conmon) when it is missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ "${1:-}" = run ] && ! command -v conmon >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "nodeagent run needs root (and Debian's conmon): run it with sudo" >&2
        exit 1
    fi
    echo "installing conmon, the container monitor the process runtime uses" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends conmon >/dev/null
fi
"$root/scripts/venv.sh" >&2
exec "$root/.venv/bin/nodeagent" "$@"
