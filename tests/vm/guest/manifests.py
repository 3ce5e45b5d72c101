"""The pods of the guest tests: the three QoS classes, a fork bomb, two swap pressure pods.

Small on purpose: the VM has 1 GiB and emulated CPUs.
"""

from __future__ import annotations

from tests.conftest import EXAMPLES

MiB = 1 << 20


def _pod(name: str, namespace: str, command: str, resources: str = "{}") -> str:
    return f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: none
    command: {command}
    resources: {resources}
"""


SLEEP = '[sleep, "3600"]'
QOS = "---\n".join([
    _pod("guaranteed", "qos", SLEEP, "{requests: {cpu: 700m, memory: 64Mi}, limits: {cpu: 700m, memory: 64Mi}}"),
    _pod("burstable", "qos", SLEEP, "{requests: {cpu: 250m, memory: 32Mi}, limits: {cpu: 500m, memory: 96Mi}}"),
    _pod("besteffort", "qos", SLEEP),
])
QOS_CLASSES = {"guaranteed": "Guaranteed", "burstable": "Burstable", "besteffort": "BestEffort"}

# 100 forks that each stay (sleep 600) in a subshell: with podPidsLimit 20 most are refused, dash's
# subshell gives up at the first refusal, and the container's own shell goes on (exec, no fork).
FORK_BOMB = _pod("fork-bomb", "pids", "[sh, -c, '(i=0; while [ $i -lt 100 ]; do sleep 600 & i=$((i+1)); done; wait); "
                                      "exec sleep 3600']")

# 72 MiB held by a container whose memory.max is 64 MiB: what does not fit must go to swap
# (Burstable under LimitedSwap: request 48Mi of ~1 GiB memory and a 1 GiB swap is ~48 MiB), or the
# container is OOM-killed (Guaranteed: memory.swap.max 0). Allocated 1 MiB every 20 ms, not at
# once as stress does: swap writes under emulation are slow, and a container that outruns them
# fills its memory with swap cache still being written out and is OOM-killed although swap is left.
SWAP_REQUEST_BYTES = 48 * MiB
HOLD_72M = ("[python3, -c, \"import time; held = [b'x' * (1 << 20) for _ in range(72) if time.sleep(0.02) is None]; "
            "time.sleep(3600)\"]")
SWAP = "---\n".join([
    _pod("swap-burstable", "swap", HOLD_72M, "{requests: {memory: 48Mi}, limits: {memory: 64Mi}}"),
    _pod("swap-guaranteed", "swap", HOLD_72M,
         "{requests: {cpu: 500m, memory: 64Mi}, limits: {cpu: 500m, memory: 64Mi}}"),
])

MEMORY_DEMO_2 = (EXAMPLES / "memory-demo-2.yaml").read_text()
