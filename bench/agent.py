"""The daemon's figures, measured on this machine with real cgroups and processes (run as root).

    .venv/bin/python bench/agent.py [--quick]
    .venv/bin/python bench/agent.py --pods 1000 [--idle 60]   # the scale run: sleeping pods only

Prints:
  manifest -> running   p50/p99 over 20 pods: from writing the manifest to the container's first
                         instruction (it writes into a FIFO this script waits on), and to the API saying
                         Running; hostNetwork pods, then pods with their own network (--start-only: these alone)
  OOM -> reported       from the kernel's OOM kill (its /dev/kmsg timestamp) to the API saying OOMKilled
  idle                  agent CPU % of one core and RSS with 200 sleeping pods, over 60 s (conmon apart)
  get pods              `nodeagent get pods` wall time with 200 pods, median of 10; beside it `kubectl get pods`
                         over the HTTPS Kubernetes API (when kubectl is installed)
  restart               SIGKILL, then start with 100 pods: to READY=1, all re-adopted
Goals: p50 <= 50 ms, OOM <= 100 ms, idle CPU <= 1 %, RSS <= 80 MB, get pods <= 150 ms, restart <= 500 ms;
at scale (--pods N): RSS <= 120 MB, idle CPU <= 1 %, get pods <= 200 ms, restart <= 1 s, every pod re-adopted.
Each figure with a goal is printed with "met" or "MISSED".
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.firstinstruction import time_to_first_instruction
from tests.integration.harness import AgentHarness, wait_for

STAMPER = ("kind: Pod\nmetadata: {name: %s}\nspec:\n  hostNetwork: %s\n  containers: [{name: c, image: x, command: "
           "[sh, -c, 'echo go > %s; exec sleep 3600']}]\n")
SLEEPER = "kind: Pod\nmetadata: {name: %s}\nspec:\n  containers: [{name: c, image: x, command: [sleep, '3600']}]\n"


@dataclass(frozen=True)
class Goals:
    rss_mb: float
    get_pods_ms: float
    restart_ms: float


EVERYDAY = Goals(rss_mb=80, get_pods_ms=150, restart_ms=500)
AT_SCALE = Goals(rss_mb=120, get_pods_ms=200, restart_ms=1000)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def manifest_to_running(agent: AgentHarness, stamps: Path, count: int, *, host_network: bool) -> None:
    first_instruction, api = [], []
    for index in range(count):
        name = f"latency-{index}"
        fifo = stamps / name
        fifo.unlink(missing_ok=True)
        asked: list[float] = []  # when the manifest was written, after the stopwatch's quiet spell

        def ask(name: str = name, fifo: Path = fifo, asked: list[float] = asked) -> None:
            asked.append(time.monotonic())
            agent.write(f"{name}.yaml", STAMPER % (name, "true" if host_network else "false", fifo))

        first_instruction.append(time_to_first_instruction(fifo, ask))
        wait_for(lambda name=name: "running" in agent.container_status(name, "c")["state"], interval=0.002,
                 what=name)
        api.append(time.monotonic() - asked[0])
    for index in range(count):
        agent.remove(f"latency-{index}.yaml")
    wait_for(lambda: not agent.pods(), timeout=60, what="latency pods gone")
    print("hostNetwork pods:" if host_network else "pods with their own network (namespace, veth, address):")
    p50 = percentile(first_instruction, .5) * 1000
    print(f"manifest -> first instruction: p50 {p50:.0f} ms, p99 {percentile(first_instruction, .99) * 1000:.0f} ms "
          f"(goal p50 <= 50 ms: {verdict(p50 <= 50)})")
    print(f"manifest -> API Running:       p50 {percentile(api, .5) * 1000:.0f} ms, "
          f"p99 {percentile(api, .99) * 1000:.0f} ms")


_OOM = re.compile(r"^\d+,\d+,(\d+),.*oom-kill:.*task_memcg=([^,]*)")


def oom_to_reported(agent: AgentHarness, rounds: int) -> None:
    latencies = []
    kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        for index in range(rounds):
            os.lseek(kmsg, 0, os.SEEK_END)
            name = f"oom-{index}"
            agent.write(f"{name}.yaml", f"kind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n"
                                        "  containers: [{name: c, image: x, resources: {limits: {memory: 50Mi}}, "
                                        "command: [stress, --vm, '1', --vm-bytes, 200M, --vm-hang, '1']}]\n")
            path = wait_for(lambda name=name: agent.cgroup_path(name, "c"), what="cgroup")

            def reported(name: str = name) -> bool:
                state = agent.container_status(name, "c")["state"]
                return state.get("terminated", {}).get("reason") == "OOMKilled"

            wait_for(reported, interval=0.002, what="OOMKilled", timeout=30)
            seen = time.clock_gettime(time.CLOCK_MONOTONIC)
            killed = None
            while True:
                try:
                    record = os.read(kmsg, 8192).decode(errors="replace")
                except BlockingIOError:
                    break
                match = _OOM.match(record)
                if match and match.group(2) == path:
                    killed = int(match.group(1)) / 1e6
            if killed is not None:
                latencies.append(seen - killed)
            agent.remove(f"{name}.yaml")
        wait_for(lambda: not agent.pods(), timeout=60, what="oom pods gone")
    finally:
        os.close(kmsg)
    if latencies:
        p50 = percentile(latencies, .5) * 1000
        print(f"OOM kill -> API OOMKilled:     p50 {p50:.0f} ms, max {max(latencies) * 1000:.0f} ms over "
              f"{len(latencies)} kills (goal p50 <= 100 ms: {verdict(p50 <= 100)})")
    else:
        print("OOM kill -> API OOMKilled:     no kernel log records matched (is /dev/kmsg readable?)")


def start_many(agent: AgentHarness, count: int) -> None:
    for index in range(count):
        agent.write(f"idle-{index}.yaml", SLEEPER % f"idle-{index}")
    wait_for(lambda: sum(1 for p in agent.pods() if p["status"]["phase"] == "Running") == count,
             timeout=max(300, count * 0.6), interval=1, what=f"{count} pods running")


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def idle(agent: AgentHarness, seconds: float, goals: Goals) -> None:
    assert agent.process is not None
    process = psutil.Process(agent.process.pid)
    conmons = [p for p in psutil.process_iter(["name", "cmdline"])
               if p.info["name"] == "conmon" and str(agent.state) in " ".join(p.info["cmdline"] or [])]
    before, conmon_before = cpu_seconds([process]), cpu_seconds(conmons)
    time.sleep(seconds)
    used, conmon_used = cpu_seconds([process]) - before, cpu_seconds(conmons) - conmon_before
    rss = process.memory_info().rss
    conmon_rss = sum(p.memory_info().rss for p in conmons)
    conmon_uss = sum(p.memory_full_info().uss for p in conmons)  # its own pages: what one more conmon costs
    cpu, rss_mb, count = used / seconds * 100, rss / 2**20, max(1, len(conmons))
    print(f"idle with {len(agent.pods())} pods over {seconds:.0f} s: agent CPU {cpu:.2f} % of a core "
          f"(goal <= 1 %: {verdict(cpu <= 1)}), RSS {rss_mb:.0f} MB (goal <= {goals.rss_mb:.0f} MB: "
          f"{verdict(rss_mb <= goals.rss_mb)})")
    print(f"{len(conmons)} conmons: RSS {conmon_rss / 2**20:.0f} MB in all ({conmon_rss / 2**20 / count:.1f} MB each), "
          f"of it their own (USS) {conmon_uss / 2**20:.0f} MB ({conmon_uss / 2**10 / count:.0f} KiB each); "
          f"CPU {conmon_used / seconds * 100:.2f} % of a core in all")


def wall_times(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.monotonic() - started)
    return times


def get_pods(agent: AgentHarness, goals: Goals, runs: int = 10) -> None:
    nodeagent = str(Path(sys.executable).parent / "nodeagent")
    times = wall_times([nodeagent, "get", "pods", "--socket", str(agent.socket)], runs)
    median = statistics.median(times) * 1000
    print(f"`nodeagent get pods` with {len(agent.pods())} pods: median {median:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms (goal <= {goals.get_pods_ms:.0f} ms: "
          f"{verdict(median <= goals.get_pods_ms)})")
    if shutil.which("kubectl") is None:
        print("`kubectl get pods`: kubectl is not installed")
        return
    kubeconfig = agent.root / "kubeconfig"
    kubeconfig.write_bytes(subprocess.run([nodeagent, "kubeconfig", "--config", str(agent.config_path)],
                                          check=True, capture_output=True).stdout)
    netns = ["nsenter", f"--net={agent.node.path}", "--"] if agent.node is not None else []
    times = wall_times([*netns, "kubectl", "--kubeconfig", str(kubeconfig), "get", "pods"], runs)
    print(f"`kubectl get pods` with {len(agent.pods())} pods (HTTPS, token, server-side Table): median "
          f"{statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")


def restart(agent: AgentHarness, root: Path, goals: Goals) -> None:
    before = {p["metadata"]["uid"]: p["status"]["containerStatuses"][0]["containerID"] for p in agent.pods()}
    agent.stop(signal.SIGKILL)
    address = root / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(address))
    listener.settimeout(120)
    started = time.monotonic()
    agent.start(env={"NOTIFY_SOCKET": str(address)})
    while b"READY=1" not in listener.recv(4096):
        pass
    ready = time.monotonic() - started
    listener.close()
    logged = re.findall(r"ready (\d+) ms after starting", agent.agent_log())
    after = {p["metadata"]["uid"]: p["status"]["containerStatuses"][0].get("containerID") for p in agent.pods()}
    adopted = sum(1 for uid, cid in before.items() if after.get(uid) == cid)
    ready_ms = ready * 1000
    print(f"restart with {len(before)} pods: READY=1 {ready_ms:.0f} ms after exec, {logged[-1]} ms of it after "
          f"Python's start and imports (goal <= {goals.restart_ms:.0f} ms: {verdict(ready_ms <= goals.restart_ms)}); "
          f"{adopted}/{len(before)} re-adopted with the same ID (goal all: {verdict(adopted == len(before))})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer pods and a shorter idle window")
    parser.add_argument("--pods", type=int, metavar="PODS",
                        help="the scale run: only PODS sleeping pods: idle, get pods, restart with all of them")
    parser.add_argument("--idle", type=float, metavar="SECONDS", help="the idle window (60 s, 10 s with --quick)")
    parser.add_argument("--start-only", action="store_true",
                        help="only the manifest -> first instruction figures (hostNetwork, own network)")
    parser.add_argument("--get-pods-only", type=int, metavar="PODS",
                        help="only start PODS pods and time `nodeagent get pods` and `kubectl get pods`")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/agent.py needs root (real cgroups and processes)")
    # as a package install leaves it: the agent's modules compiled, else with PYTHONDONTWRITEBYTECODE set
    # every start (the restart figure) compiles them from source again
    compileall.compile_dir(Path(__file__).resolve().parent.parent / "nodeagent", quiet=1)
    with tempfile.TemporaryDirectory(prefix="nodeagent-bench-") as directory:
        root = Path(directory)
        agent = AgentHarness(root)
        agent.configure({"nodeagent": {"logLevel": "INFO"}, "fileCheckFrequency": "20s",
                         "maxPods": max(250, args.pods or 0, args.get_pods_only or 0)})
        stamps = root / "stamps"
        stamps.mkdir()
        try:
            agent.start()
            if args.get_pods_only is not None:
                start_many(agent, args.get_pods_only)
                get_pods(agent, EVERYDAY)
                return
            seconds = args.idle if args.idle is not None else 10 if args.quick else 60
            if args.pods is not None:
                start_many(agent, args.pods)
                idle(agent, seconds, AT_SCALE)
                get_pods(agent, AT_SCALE)
                restart(agent, root, AT_SCALE)
                return
            manifest_to_running(agent, stamps, 20, host_network=True)
            manifest_to_running(agent, stamps, 20, host_network=False)
            if args.start_only:
                return
            oom_to_reported(agent, 3 if args.quick else 10)
            many = 40 if args.quick else 200
            start_many(agent, many)
            idle(agent, seconds, EVERYDAY)
            get_pods(agent, EVERYDAY)
            for index in range(100, many):
                agent.remove(f"idle-{index}.yaml")
            wait_for(lambda: len(agent.pods()) == min(100, many), timeout=120, interval=0.5, what="100 pods")
            restart(agent, root, EVERYDAY)
        finally:
            agent.clean_up()


if __name__ == "__main__":
    main()
