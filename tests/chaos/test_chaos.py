"""The seeded chaos runs of CI (tests/chaos/engine.py): a fixed seed and a CI-sized number of steps for each
runtime. A failure lists every violated invariant; the report line is printed either way (pytest -s).
For longer soaks: `python -m tests.chaos --runtime process --seed N --steps N`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.backends import Backend, CriBackend, ProcessBackend, RuncBackend
from tests.chaos.engine import Chaos
from tests.integration.containerd import TestImages, cri_images

__all__ = ["cri_images"]  # the fixture, imported for pytest

SEED = 20261204


def run(tmp_path: Path, backend: Backend, steps: int) -> None:
    chaos = Chaos(tmp_path / "run", backend, seed=SEED, steps=steps)
    try:
        report = chaos.run()
    finally:
        chaos.close()
    print(report.line())
    assert report.violations == [], "\n".join(report.violations)
    assert report.steps == steps and report.converge and report.samples > 100


@pytest.fixture
def root(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root: the agent creates cgroups, processes, mounts and namespaces")
    return tmp_path


@pytest.mark.timeout(300)
def test_chaos_process_runtime(root: Path) -> None:
    run(root, ProcessBackend(root), steps=80)


@pytest.mark.timeout(240)
def test_chaos_runc_runtime(root: Path) -> None:
    run(root, RuncBackend(root), steps=30)


@pytest.mark.timeout(240)
def test_chaos_cri_runtime(root: Path, cri_images: TestImages) -> None:
    run(root, CriBackend(root, cri_images), steps=30)
