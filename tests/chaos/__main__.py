"""A chaos run from the command line, for soaks (as root, from the repository's root):

    .venv/bin/python -m tests.chaos --runtime process --seed 1 --steps 100000 --minutes 30

Prints one line per step and round, then the report line; exits 1 when an invariant was violated.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.chaos.backends import Backend, CriBackend, ProcessBackend, RuncBackend
from tests.chaos.engine import Chaos


def backend(name: str, root: Path) -> Backend:
    kinds: dict[str, Callable[[Path], Backend]] = {"process": ProcessBackend, "runc": RuncBackend, "cri": CriBackend}
    return kinds[name](root)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos")
    parser.add_argument("--runtime", default="process", choices=["process", "runc", "cri"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--minutes", type=float, default=None, help="stop starting rounds after this long")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (the agent's log)")
    args = parser.parse_args()
    for signum in (signal.SIGINT, signal.SIGTERM):  # stopping a soak cleans up (even started with nohup &)
        signal.signal(signum, signal.default_int_handler)
    root = Path(tempfile.mkdtemp(prefix="nodeagent-chaos-"))
    try:
        chaos = Chaos(root / "run", backend(args.runtime, root), seed=args.seed, steps=args.steps, minutes=args.minutes,
                      log=lambda text: print(f"{time.strftime('%H:%M:%S')} {text}", flush=True))
        try:
            report = chaos.run()
        finally:
            if args.keep:
                shutil.copy(chaos.harness.log_path, root / "agent.log")
            chaos.close()
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    for violation in report.violations:
        print(f"violation: {violation}")
    print(report.line(), flush=True)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
