"""A seeded chaos run against a real agent: random actions and faults, invariants checked all along.

The run is a series of rounds. A round applies a few random actions (manifest churn, the agent killed or
stopped and started again, containers, conmons and probe targets killed, container cgroups removed, the
state directory filled, the URL source broken, the backend's own faults), each after a random pause so
that faults land in the middle of starts, stops, pulls and teardowns. Then every fault is healed and the
agent must converge on the desired set (tests.chaos.world) within CONVERGE_SECONDS; the time it takes is
the round's figure. After the last round every manifest is removed and nothing of the run may be left.

Invariants (each violation is recorded with what was seen; a run must end with none):
- one instance: never two live instances of one container (tests.chaos.sampler, every 25 ms);
- convergence: after the faults stop, the agent runs exactly the desired pods, every container running
  (one live instance, of the right pod version) or backing off (none), and no other pod cgroup exists;
- restart counts never go backwards while a pod exists;
- no exit lost: a container that restarted has a last state with its exit code and reason, and when
  its restart count went up by one that last state is the attempt seen running before;
- nothing leaked once all manifests are gone (cgroups, processes, conmons, mounts, netns, veths,
  nft rules, leases, bundles, state directories);
- the agent never exits on its own, and a SIGTERM ends it within STOP_SECONDS.
"""

from __future__ import annotations

import random
import signal
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos import faults
from tests.chaos.backends import Backend
from tests.chaos.invariants import History, Leaks, convergence_problems, pod_cgroups
from tests.chaos.sampler import Sampler
from tests.chaos.world import World
from tests.integration.harness import NODE, AgentHarness

CONVERGE_SECONDS = 90.0
CLEAN_SECONDS = 60.0
STOP_SECONDS = 15.0
POD_NAMES = 6


@dataclass
class Report:
    runtime: str
    seed: int
    steps: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    checks: int = 0
    samples: int = 0
    violations: list[str] = field(default_factory=list)
    converge: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    def line(self) -> str:
        kinds = ",".join(f"{kind}={count}" for kind, count in sorted(self.faults.items()))
        p50 = statistics.median(self.converge) if self.converge else 0.0
        worst = max(self.converge, default=0.0)
        return (f"chaos runtime={self.runtime} seed={self.seed} steps={self.steps} faults={sum(self.faults.values())} "
                f"({kinds}) checks={self.checks} samples={self.samples} violations={len(self.violations)} "
                f"converge p50={p50:.1f}s max={worst:.1f}s rounds={len(self.converge)} elapsed={self.elapsed:.0f}s")


class Chaos:
    def __init__(self, root: Path, backend: Backend, *, seed: int, steps: int, minutes: float | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.rng = random.Random(seed)
        self.steps = steps
        self.minutes = minutes  # a time budget too (soaks): no new round once it is spent
        self.backend = backend
        self.log = log
        self.report = Report(backend.name, seed)
        self.run_token = f"{seed}-{random.Random().getrandbits(32):08x}"
        root.mkdir(parents=True, exist_ok=True)
        self.harness = AgentHarness(root)
        self.state = self.harness.state
        self.state.mkdir()
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "chaos-state", str(self.state)],
                           check=True)
            backend.configure(self.harness)
        except BaseException:
            self.harness.clean_up()
            raise
        self.netns = self.harness.node.path if self.harness.node is not None else self.harness.netns
        self.url = faults.UrlServer(root / "url", 20000 + self.rng.randrange(20000), self.netns)
        self.world = World(self.run_token, NODE, str(self.harness.manifests), self.url.url, backend.flavour(root))
        self.harness.configure({"fileCheckFrequency": "1s", "staticPodURL": self.url.url, "httpCheckFrequency": "2s"})
        self.sampler = Sampler(self.run_token, faults.cgroup_dir(self.harness.cgroup_root))
        self.agent_up = False
        self.filled = False
        self.history = History(self.violation)
        self.leaks = Leaks(self.harness, backend, self.run_token, self.netns, self.world.every_uid)

    # -- the run ------------------------------------------------------------------------------------

    def run(self) -> Report:
        began = time.monotonic()
        try:
            self.url.start()
            self.sampler.start()
            self._start_agent()
            while self.report.steps < self.steps and \
                    (self.minutes is None or time.monotonic() - began < self.minutes * 60):
                for _ in range(min(self.rng.randint(2, 5), self.steps - self.report.steps)):
                    self._step()
                self._heal()
                self._converge()
            self._finish()
        finally:
            self.sampler.stop()
            self.report.samples = self.sampler.samples
            self.report.violations += [f"two instances at once: {o}" for o in self.sampler.overlaps]
            self.report.elapsed = time.monotonic() - began
        return self.report

    def close(self) -> None:
        """Remove everything the run made, whatever happened (the harness's safety net, then ours)."""
        try:
            self.url.stop()
            faults.free(self.state)
            if self.harness.node is not None:
                self.harness.node.uids.extend(self.world.every_uid)
            self.harness.clean_up()
        finally:
            self.backend.close()

    def violation(self, text: str) -> None:
        self.log(f"VIOLATION: {text}")
        self.report.violations.append(text)

    # -- actions ------------------------------------------------------------------------------------

    def _step(self) -> None:
        self.report.steps += 1
        actions: list[tuple[int, Callable[[], str | None]]] = [
            (6, self._add), (5, self._change), (3, self._invalid), (3, self._rename), (3, self._delete),
            (2, self._duplicate), (3, self._url_change), (3, self._url_break),
            (4, lambda: self._agent_down(signal.SIGKILL)), (2, lambda: self._agent_down(signal.SIGTERM)),
            (3, self._kill_container), (2, self._kill_monitor), (2, self._kill_target), (2, self._remove_cgroup),
            (1, self._fill), *((weight, action) for weight, action in self.backend.actions(self.rng))]
        kind = None
        for _ in range(10):  # an action that has nothing to act on (no pod to kill yet): another one
            action = self.rng.choices([a for _, a in actions], weights=[w for w, _ in actions])[0]
            if (kind := action()) is not None:
                break
        if kind is not None:
            self.report.faults[kind] += 1
            self.log(f"step {self.report.steps}: {kind}")
        time.sleep(self.rng.uniform(0, 0.8))
        self._check_always()

    def _write(self, file: str, content: bytes) -> None:
        self.world.files[file] = content
        self.harness.write(file, content.decode())

    def _p_file(self, index: int) -> str | None:
        return next((f for f in sorted(self.world.files) if f == f"p{index}.yaml" or f.startswith(f"p{index}-r")), None)

    def _add(self) -> str | None:
        free = [i for i in range(POD_NAMES) if self._p_file(i) is None]
        if not free:
            return self._delete()
        index = self.rng.choice(free)
        self._write(f"p{index}.yaml", self.world.manifest(f"chaos-{index}", index))
        return "add"

    def _existing(self) -> list[tuple[int, str]]:
        return [(i, f) for i in range(POD_NAMES) if (f := self._p_file(i)) is not None]

    def _change(self) -> str | None:
        if not (existing := self._existing()):
            return self._add()
        index, file = self.rng.choice(existing)
        self.world.bump(f"chaos-{index}")
        self._write(file, self.world.manifest(f"chaos-{index}", index))
        return "change"

    def _invalid(self) -> str | None:
        candidates = [(i, f) for i, f in self._existing() if self.world.is_confirmed_valid(f)]
        if not candidates:
            return None
        index, file = self.rng.choice(candidates)
        self._write(file, self.world.manifest(f"chaos-{index}", index, valid=False))
        return "invalid"

    def _rename(self) -> str | None:
        if not (existing := self._existing()):
            return None
        index, file = self.rng.choice(existing)
        renamed = f"p{index}-r{self.rng.randrange(1000)}.yaml"
        self.world.files[renamed] = self.world.files.pop(file)
        (self.harness.manifests / file).rename(self.harness.manifests / renamed)
        return "rename"

    def _delete(self) -> str | None:
        files = sorted(self.world.files)
        if not files:
            return None
        file = self.rng.choice(files)
        del self.world.files[file]
        self.harness.remove(file)
        return "delete"

    def _duplicate(self) -> str | None:
        index = self.rng.randrange(POD_NAMES)
        self._write(f"zz-dup-{index}.yaml", self.world.manifest(f"chaos-{index}", index))
        return "duplicate"

    def _url_change(self) -> str | None:
        for i in range(2):
            if self.rng.random() < 0.5:
                self.world.bump(f"chaos-url-{i}")
        self.world.url_body = self.world.url_manifest(self.rng.randint(0, 2))
        self.url.set_body(self.world.url_body)
        return "url-change"

    def _url_break(self) -> str | None:
        mode = self.rng.choice(["error", "garbage", "slow", "down"])
        if mode == "down":
            self.url.stop()
        else:
            self.url.set_mode(mode)
        return f"url-{mode}"

    def _agent_down(self, sig: int) -> str | None:
        if not self._agent_alive():
            return None
        assert self.harness.process is not None
        self.harness.process.send_signal(sig)
        try:
            self.harness.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.violation(f"SIGTERM did not stop the agent within {STOP_SECONDS:.0f}s")
            self.harness.process.kill()
            self.harness.process.wait()
        self.harness.process = None
        self.agent_up = False
        time.sleep(self.rng.uniform(0, 1.0))
        self._start_agent()
        return "agent-sigkill" if sig == signal.SIGKILL else "agent-sigterm"

    def _instance(self) -> Any:
        instances = self.sampler.instances()
        return self.rng.choice(instances) if instances else None

    def _kill_container(self) -> str | None:
        instance = self._instance()
        return "kill-container" if instance and faults.kill_container(instance, self.run_token) else None

    def _kill_monitor(self) -> str | None:
        instance = self._instance()
        if not instance or not self.backend.monitored:
            return None
        return "kill-conmon" if faults.kill_monitor(instance, str(self.state)) else None

    def _kill_target(self) -> str | None:
        instances = [i for i in self.sampler.instances() if i.chaos_id.endswith("/main") and
                     int(i.chaos_id.split("/")[0].rsplit("-", 1)[1]) % 3 == 0]
        if not instances:
            return None
        return "kill-probe-target" if faults.kill_probe_target(self.rng.choice(instances), self.run_token) else None

    def _remove_cgroup(self) -> str | None:
        instance = self._instance()
        return "remove-cgroup" if instance and faults.remove_cgroup(instance, self.harness.cgroup_root) else None

    def _fill(self) -> str | None:
        if self.filled:
            faults.free(self.state)
            self.filled = False
            return "free-state"
        faults.fill(self.state)
        self.filled = True
        return "fill-state"

    # -- the agent ----------------------------------------------------------------------------------

    def _start_agent(self) -> None:
        try:
            self.harness.start(wait=not self.backend.blocks_start())  # else it waits for its runtime
            self.agent_up = True
        except AssertionError as exc:
            self.violation(f"the agent did not start: {str(exc)[-1500:]}")
            self.harness.process = None
            faults.free(self.state)
            self.filled = False
            self.harness.start()
            self.agent_up = True

    def _agent_alive(self) -> bool:
        process = self.harness.process
        if process is not None and (code := process.poll()) is not None:
            self.violation(f"the agent exited on its own with {code}: {self.harness.agent_log()[-1500:]}")
            self.harness.process = None
            self.agent_up = False
            self._start_agent()
        return process is not None

    def _heal(self) -> None:
        faults.free(self.state)
        self.filled = False
        self.url.set_mode("ok")
        self.url.start()
        self.backend.heal()
        if self._agent_alive():
            try:
                self.harness.wait_for_api()
            except AssertionError as exc:
                self.violation(f"the agent's API did not answer after the faults were healed: {str(exc)[-1500:]}")

    # -- invariants ---------------------------------------------------------------------------------

    def _pods(self) -> list[dict[str, Any]] | None:
        try:
            return self.harness.pods()
        except Exception:
            return None

    def _check_always(self) -> None:
        self._agent_alive()
        pods = self._pods()
        if pods is not None:
            self.report.checks += 1
            self.history.check(pods)

    def _problems(self) -> list[str]:
        pods = self._pods()
        if pods is None:
            return ["the API does not answer"]
        return convergence_problems(self.world.desired(), pods, self.sampler.instances(),
                                    pod_cgroups(self.harness))

    def _converge(self) -> None:
        began = time.monotonic()
        problems: list[str] = []
        while time.monotonic() - began < CONVERGE_SECONDS:
            self._agent_alive()
            self.report.checks += 1
            if not (problems := self._problems()):
                self.report.converge.append(time.monotonic() - began)
                self.world.confirm(self.world.desired())
                self.log(f"converged in {time.monotonic() - began:.1f}s")
                self._check_always()
                return
            time.sleep(0.2)
        self.violation(f"no convergence within {CONVERGE_SECONDS:.0f}s: " + "; ".join(problems[:8]))
        self.world.confirm(self.world.desired())

    def _finish(self) -> None:
        """Every manifest gone, the URL empty: nothing of the run may be left."""
        for file in list(self.world.files):
            del self.world.files[file]
            self.harness.remove(file)
        self.world.url_body = b""
        self.url.set_body(b"")
        self._heal()
        self._converge()
        began = time.monotonic()
        leaks: list[str] = []
        while time.monotonic() - began < CLEAN_SECONDS:
            self.report.checks += 1
            if not (leaks := self.leaks.found()):
                return
            time.sleep(0.5)
        for leak in leaks:
            self.violation(f"left behind: {leak}")
