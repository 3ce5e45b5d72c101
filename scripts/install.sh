#!/usr/bin/env bash
# Install nodeagent from this checkout as a systemd service; run it again to upgrade.
#   sudo scripts/install.sh
#
# Creates PREFIX/venv with this checkout installed in it (not editable), the Debian packages the
# process runtime needs, UNIT_DIR/nodeagent.service, ETC/nodeagent/nodeagent.yaml (only when it does
# not exist: an operator's configuration is never overwritten) and ETC/kubernetes/manifests.
# Nothing is started: the last lines say what to run next. Pods keep running across an upgrade and
# `systemctl restart nodeagent`: the agent re-adopts them.
#
# Environment: PREFIX (default /opt/nodeagent), ETC (/etc), UNIT_DIR (/etc/systemd/system),
# PYTHON (python3).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${PREFIX:-/opt/nodeagent}"
etc="${ETC:-/etc}"
unit_dir="${UNIT_DIR:-/etc/systemd/system}"
python="${PYTHON:-python3}"
venv="$prefix/venv"
config="$etc/nodeagent/nodeagent.yaml"
manifests="$etc/kubernetes/manifests"
unit="$unit_dir/nodeagent.service"

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo $0)" >&2
    exit 1
fi

# Debian packages: conmon for the process runtime, nftables for pod networks (util-linux and mount, for
# setpriv, nsenter and mount, are always there), python3-venv when `python3 -m venv` cannot
# bootstrap pip.
packages=()
command -v conmon >/dev/null || [ -x /usr/libexec/podman/conmon ] || packages+=(conmon)
command -v nft >/dev/null || packages+=(nftables)
# the runc runtime's seccomp RuntimeDefault is containers-common's profile (nodeagent/runtime/seccomp.py)
if command -v runc >/dev/null && [ ! -f /usr/share/containers/seccomp.json ]; then
    packages+=(golang-github-containers-common)
fi
"$python" -c "import ensurepip, venv" 2>/dev/null || packages+=(python3-venv)
if [ "${#packages[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null; then
        echo "install.sh: install ${packages[*]} with this system's package manager, then run me again" >&2
        exit 1
    fi
    echo "installing Debian packages: ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

# The venv: made once, made again when its Python no longer runs (the system's Python was upgraded).
if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c "" 2>/dev/null; then
    echo "$venv/bin/python does not run: making the venv again"
    rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$prefix"
    "$python" -m venv "$venv"
fi

# Build from a clean copy, so no build/ or *.egg-info is left in the checkout and no stale build/lib
# file from an earlier build is installed. pip reinstalls a local project even at the same version.
source_copy="$(mktemp -d)"
trap 'rm -rf "$source_copy"' EXIT
tar -C "$root" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude='./.*_cache' --exclude=./.hypothesis -cf - . | tar -C "$source_copy" -xf -
"$venv/bin/pip" install --quiet --disable-pip-version-check "$source_copy"
version="$("$venv/bin/nodeagent" --version)"

# The unit, pointing at this venv and configuration.
mkdir -p "$unit_dir"
sed -e "s|/opt/nodeagent/venv/bin/nodeagent|$venv/bin/nodeagent|" \
    -e "s|/etc/nodeagent/nodeagent.yaml|$config|" "$root/systemd/nodeagent.service" >"$source_copy/nodeagent.service"
install -m 0644 "$source_copy/nodeagent.service" "$unit"

if [ -e "$config" ]; then
    config_note="kept as it was"
else
    install -d -m 0755 "$etc/nodeagent"
    install -m 0644 "$root/config/nodeagent.yaml" "$config"
    config_note="new, every value the default"
fi
if [ -d "$manifests" ]; then
    manifests_note="existed"
else
    install -d -m 0755 -o root -g root "$manifests"
    manifests_note="new"
fi

echo "installed $version"
echo "  program:    $venv/bin/nodeagent"
echo "  unit:       $unit"
echo "  config:     $config ($config_note)"
echo "  manifests:  $manifests ($manifests_note)"
echo "next: $venv/bin/nodeagent doctor --config $config   (what to fix before starting)"
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if systemctl is-active --quiet nodeagent.service; then
        echo "then: systemctl restart nodeagent   (runs the new version; pods keep running)"
    else
        echo "then: systemctl enable --now nodeagent"
    fi
else
    echo "then, as systemd is not PID 1 here, run the agent under your own supervisor:"
    echo "  $venv/bin/nodeagent run --config $config"
fi
