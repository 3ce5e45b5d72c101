"""Prometheus metrics, with the kubelet's names where it has them (prometheus-client).

    kubelet_running_pods, kubelet_running_containers{container_state}, kubelet_started_pods_total,
    kubelet_started_containers_total{container_type}, kubelet_restarted_pods_total{static},
    kubelet_pod_start_duration_seconds, nodeagent_oom_kills_total, nodeagent_manifest_errors_total,
    nodeagent_container_restarts_total{namespace,pod,container}

Counters are counted as things happen; gauges are read from the pods at scrape time. One registry per
agent: nothing global.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nodeagent.agent.records import State

if TYPE_CHECKING:
    from nodeagent.agent.view import PodView

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# kubelet_pod_start_duration_seconds' buckets (pkg/kubelet/metrics)
POD_START_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200,
                     1800, 2700, 3600)


class AgentMetrics:
    def __init__(self, pods: Callable[[], Iterable[PodView]]) -> None:
        self.registry = CollectorRegistry()
        self._started_pods = Counter("kubelet_started_pods", "Pods started.", registry=self.registry)
        self._started_containers = Counter("kubelet_started_containers", "Containers started.", ["container_type"],
                                           registry=self.registry)
        self._restarted_pods = Counter("kubelet_restarted_pods", "Pods replaced because their manifest changed.",
                                       ["static"], registry=self.registry)
        self._pod_start = Histogram("kubelet_pod_start_duration_seconds",
                                    "From a pod first seen to all its containers running.",
                                    buckets=POD_START_BUCKETS, registry=self.registry)
        self._oom_kills = Counter("nodeagent_oom_kills", "Containers OOM-killed (from the cgroups' counters).",
                                  registry=self.registry)
        self._manifest_errors = Counter("nodeagent_manifest_errors", "Manifests that failed to parse or validate.",
                                        registry=self.registry)
        self.registry.register(_PodCollector(pods))

    def pod_started(self, seconds: float) -> None:
        self._started_pods.inc()
        self._pod_start.observe(seconds)

    def container_started(self, *, init: bool) -> None:
        self._started_containers.labels(container_type="init_container" if init else "container").inc()

    def pod_replaced(self) -> None:
        self._restarted_pods.labels(static="true").inc()

    def oom_kill(self) -> None:
        self._oom_kills.inc()

    def manifest_error(self) -> None:
        self._manifest_errors.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PodCollector(Collector):
    def __init__(self, pods: Callable[[], Iterable[PodView]]) -> None:
        self.pods = pods

    def collect(self) -> Iterator[Metric]:
        running_pods = GaugeMetricFamily("kubelet_running_pods", "Pods with at least one running container.")
        containers = GaugeMetricFamily("kubelet_running_containers", "Containers by state.",
                                       labels=["container_state"])
        restarts = CounterMetricFamily("nodeagent_container_restarts", "Restarts of each container.",
                                       labels=["namespace", "pod", "container"])
        by_state = {"running": 0, "exited": 0, "created": 0}
        pods_running = 0
        for worker in self.pods():
            records = list(worker.records.values())
            pods_running += any(r.state is State.RUNNING for r in records)
            for record in records:
                state = {State.RUNNING: "running", State.TERMINATED: "exited"}.get(record.state, "created")
                by_state[state] += 1
                restarts.add_metric([worker.pod.namespace, worker.pod.name, record.name], record.restart_count)
        running_pods.add_metric([], pods_running)
        for state, count in by_state.items():
            containers.add_metric([state], count)
        yield from (running_pods, containers, restarts)
