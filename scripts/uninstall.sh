#!/usr/bin/env bash
# Remove the nodeagent service that scripts/install.sh installed.
#   sudo scripts/uninstall.sh            stop and disable the service, remove the unit and PREFIX/venv
#   sudo scripts/uninstall.sh --purge    also the configuration, the manifest directory and the state
#                                        directory (refused while containers are still running)
#
# Stopping the service never stops pods (KillMode=process): without --purge, running pods, their
# manifests and the agent's state stay, and a later install re-adopts them. To stop pods, remove their
# manifests while the agent runs and wait until `nodeagent get pods` no longer lists them.
#
# Environment: PREFIX (default /opt/nodeagent), ETC (/etc), UNIT_DIR (/etc/systemd/system), as for
# install.sh.
set -euo pipefail
prefix="${PREFIX:-/opt/nodeagent}"
etc="${ETC:-/etc}"
unit_dir="${UNIT_DIR:-/etc/systemd/system}"
venv="$prefix/venv"
config="$etc/nodeagent/nodeagent.yaml"
unit="$unit_dir/nodeagent.service"

usage() {
    sed -n '2,5s/^# \{0,1\}//p' "$0"
}

purge=false
for argument in "$@"; do
    case "$argument" in
        --purge) purge=true ;;
        -h|--help) usage; exit 0 ;;
        *) echo "uninstall.sh: unknown argument $argument" >&2; usage >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" -ne 0 ]; then
    echo "uninstall.sh: run as root (sudo $0)" >&2
    exit 1
fi

# rm -rf, but never of a relative path or a top-level directory (/, /etc, /var).
remove() {
    local path="" what="$2"
    case "$1" in
        /*) path="$(realpath -m -s -- "$1")" ;;
    esac
    case "$path" in
        /?*/?*) ;;
        *) echo "not removed: $what $1 (will not remove a relative path or a top-level directory)"; return ;;
    esac
    if [ -e "$path" ] || [ -L "$path" ]; then
        rm -rf -- "$path"
        echo "removed $what: $path"
    fi
}

# --purge: where the configuration puts manifests and state, read by the installed nodeagent; checked
# before anything changes, so a refusal leaves everything as it was.
purge_paths=()
if $purge && [ -f "$config" ]; then
    if [ -x "$venv/bin/python" ] && paths="$("$venv/bin/python" -c '
import sys
from nodeagent.config import load_config
config, _ = load_config(sys.argv[1])
print(config.static_pod_path)
print(config.nodeagent.state_dir)' "$config")"; then
        mapfile -t purge_paths <<<"$paths"
    else
        echo "note: $config cannot be read with $venv: its staticPodPath and nodeagent.stateDir are kept;" \
             "remove them yourself (defaults: /etc/kubernetes/manifests, /var/lib/nodeagent)"
    fi
fi
if [ "${#purge_paths[@]}" -eq 2 ]; then
    running=()
    for pid_file in "${purge_paths[1]}"/containers/*/conmon.pid; do
        [ -f "$pid_file" ] || continue
        if [ "$(cat "/proc/$(cat "$pid_file")/comm" 2>/dev/null)" = conmon ]; then
            running+=("$(basename "$(dirname "$pid_file")")")
        fi
    done
    if [ "${#running[@]}" -gt 0 ]; then
        echo "uninstall.sh: ${#running[@]} containers still run (${running[*]}): --purge would leave them" \
             "running with nothing to manage them. Nothing was removed." >&2
        echo "Stop them first: remove their manifests from ${purge_paths[0]} while the agent runs, wait until" \
             "\`nodeagent get pods\` lists none, then run uninstall.sh --purge again." >&2
        exit 1
    fi
fi

if [ -d /run/systemd/system ] && [ "$(systemctl show -P FragmentPath nodeagent.service)" = "$unit" ]; then
    systemctl disable --now nodeagent.service
    echo "stopped and disabled nodeagent.service (pods keep running)"
fi
remove "$unit" "unit"
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
remove "$venv" "venv"
rmdir "$prefix" 2>/dev/null || true

if $purge; then
    remove "$etc/nodeagent" "configuration"
    if [ "${#purge_paths[@]}" -eq 2 ]; then
        remove "${purge_paths[0]}" "manifests (staticPodPath)"
        remove "${purge_paths[1]}" "state directory (nodeagent.stateDir)"
    fi
    echo "left in place: the cgroups the agent made under cgroupRoot (kubepods)."
else
    echo "kept: the configuration ($etc/nodeagent), the manifests and the state directory. Running pods keep"
    echo "running, unmanaged, until nodeagent is installed again (it re-adopts them)."
    echo "To remove everything: with the agent running, remove the manifests and wait until \`nodeagent get pods\`"
    echo "lists none, then run uninstall.sh --purge."
fi
