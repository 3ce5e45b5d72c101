#!/usr/bin/env bash
# Install everything the tests need (Debian packages, Python packages in .venv), then run the checks
# and the whole test suite. Run as root on Debian: the integration tests use real cgroups.
#   sudo scripts/test.sh [pytest arguments]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# Debian packages the tests use; installed only when missing.
packages=(stress conmon systemd iproute2 nftables containerd runc crun containernetworking-plugins busybox-static
          gcc libc6-dev docker-registry apache2-utils dbus etcd-server etcd-client
          golang-github-containers-common
          qemu-system-x86 linux-image-amd64 debootstrap e2fsprogs cpio kmod)
missing=()
# kubectl for the Kubernetes API tests (tests/integration/test_kubeapi.py): Debian's, when there is none
command -v kubectl >/dev/null || packages+=(kubernetes-client)
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

scripts/venv.sh test
venv="$root/.venv/bin"
echo "== generated CRI code" >&2
scripts/check-cri-generated.sh
echo "== ruff" >&2
"$venv/ruff" check nodeagent tests bench
echo "== mypy" >&2
"$venv/mypy" nodeagent tests
echo "== import contracts" >&2
"$venv/lint-imports"
echo "== pytest" >&2
status=0
"$venv/pytest" --durations=25 "$@" || status=$?
# The fast tier as an unprivileged user (nobody), as it promises; skipped, saying why, where the machine does not
# allow it (see the script). Only on a full run; NODEAGENT_UNPRIVILEGED=0 leaves it out.
if [ "$#" -eq 0 ] && [ "${NODEAGENT_UNPRIVILEGED:-1}" != 0 ]; then
    echo "== tests/unit as an unprivileged user" >&2
    scripts/unit-unprivileged.sh || status=1
fi
# The VM suite (tests/vm/run.py): the agent on real cgroup v2 and v1 under systemd, in a throwaway VM
# (image cached in .cache/vm). Only on a full run (no pytest arguments); NODEAGENT_VM=0 leaves it out.
if [ "$#" -eq 0 ] && [ "${NODEAGENT_VM:-1}" != 0 ]; then
    echo "== VM suite" >&2
    "$venv/python" tests/vm/run.py || status=1
fi
exit "$status"
