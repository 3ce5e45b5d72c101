#!/usr/bin/env bash
# Run tests/unit as an unprivileged user (nobody, uid 65534), as the fast tier promises: no root, no real
# cgroups, no real time. scripts/test.sh runs it when it runs as root.
#   sudo scripts/unit-unprivileged.sh [pytest arguments]
# Nothing is installed: the user runs the venv's interpreter if it may (else the system's python of the same
# version, given the venv's packages through a .pth file) on this checkout, with a temporary HOME and basetemp.
# Where the machine does not allow it (no setpriv, a checkout or venv the user cannot read) it says why and
# exits 0: the step must not break a CI machine with the project at an arbitrary path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
user=65534
skip() { echo "tests/unit as uid $user: skipped: $*" >&2; exit 0; }

[ "$(id -u)" = 0 ] || skip "not root (the suite already runs unprivileged)"
command -v setpriv >/dev/null || skip "no setpriv (util-linux)"
work="$(mktemp -d /tmp/nodeagent-unit.XXXXXX)"
trap 'rm -rf "$work"' EXIT
chown "$user:$user" "$work"
chmod 0755 "$work"
# setpriv execs with root's capabilities still in effect (it could run what the user cannot): env, as the user,
# execs the command the way the user would
as_user=(setpriv "--reuid=$user" "--regid=$user" --clear-groups env -i
         PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME="$work"
         PYTHONDONTWRITEBYTECODE=1 HYPOTHESIS_STORAGE_DIRECTORY="$work/hypothesis")
venv_python="$root/.venv/bin/python"
[ -x "$venv_python" ] || skip "no .venv (scripts/venv.sh test makes it)"
"${as_user[@]}" test -r "$root/tests/unit/__init__.py" || skip "uid $user cannot read $root"
site="$("$venv_python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
"${as_user[@]}" test -r "$site" || skip "uid $user cannot read $site"

python="$venv_python"
if ! (cd "$root" && "${as_user[@]}" "$venv_python" -c 'import nodeagent.agent.app, pytest') 2>/dev/null; then
    # e.g. the venv's interpreter under /root (pyenv): the system's of the same version, with the venv's packages
    version="$("$venv_python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    base="$("${as_user[@]}" sh -c "command -v python$version")" \
        || skip "uid $user can run neither $venv_python nor a python$version of its own"
    "${as_user[@]}" "$base" -m venv --without-pip "$work/venv"
    echo "import site; site.addsitedir('$site')" >"$work/venv/lib/python$version/site-packages/nodeagent-venv.pth"
    python="$work/venv/bin/python"
    # the console script, where the tests look for it (beside the interpreter)
    printf '#!%s\nimport sys\nfrom nodeagent.cli.main import main\nsys.exit(main())\n' "$python" >"$work/venv/bin/nodeagent"
    chmod 0755 "$work/venv/bin/nodeagent"
fi
cd "$root"
echo "tests/unit as uid $user with $python" >&2
"${as_user[@]}" "$python" -m pytest tests/unit -q -p no:cacheprovider --basetemp="$work/pytest" "$@"
