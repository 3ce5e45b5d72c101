#!/usr/bin/env bash
# Run nodeagent from this checkout, installing it into .venv first if needed.
#   sudo scripts/nodeagent.sh run                        the agent, with its embedded defaults
#   scripts/nodeagent.sh plan examples/memory-demo.yaml  what the kubelet would write for a pod
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/venv.sh" >&2
exec "$root/.venv/bin/nodeagent" "$@"
