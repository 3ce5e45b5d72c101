#!/usr/bin/env bash
# Run nodeagent from this checkout, installing it into .venv first if needed.
#   sudo scripts/nodeagent.sh run                        the agent, with its embedded defaults
#   scripts/nodeagent.sh plan examples/memory-demo.yaml  what the kubelet would write for a pod
# `run` also installs what the default runtime needs when it is missing: Debian's conmon (the container
# monitor), nftables (pod networks' masquerade and hostPorts) and stress (what the examples/ pods run, as
# the Kubernetes docs' polinux/stress image does). The configuration is $NODEAGENT_CONFIG when set.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
missing=()
if [ "${1:-}" = run ]; then
    command -v conmon >/dev/null 2>&1 || missing+=(conmon)
    command -v nft >/dev/null 2>&1 || missing+=(nftables)
    command -v stress >/dev/null 2>&1 || missing+=(stress)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "nodeagent run needs root (and Debian's ${missing[*]}): run it with sudo" >&2
        exit 1
    fi
    echo "installing ${missing[*]}, which the process runtime, pod networks and the examples use" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
"$root/scripts/venv.sh" >&2
exec "$root/.venv/bin/nodeagent" "$@"
