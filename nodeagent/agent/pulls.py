"""An image made ready for a container's start, with the kubelet's Pulling and Pulled events."""

from __future__ import annotations

from nodeagent.agent.events import NORMAL, EventRecorder, ObjectRef
from nodeagent.runtime.base import ContainerSpec, Runtime
from nodeagent.timeformat import go_duration


async def ensure_image(runtime: Runtime, events: EventRecorder, ref: ObjectRef, spec: ContainerSpec) -> str:
    """The image, pulled if its policy says so; its digest reference ("" for a runtime without images)."""

    def on_pull() -> None:
        events.record(ref, NORMAL, "Pulling", f'Pulling image "{spec.image}"')

    ready = await runtime.ensure_image(spec, on_pull)
    if ready is None:
        return ""
    if ready.pulled:
        took = go_duration(ready.seconds)
        events.record(ref, NORMAL, "Pulled", f'Successfully pulled image "{spec.image}" in {took} ({took} '
                                             f"including waiting). Image size: {ready.size_bytes} bytes.")
    else:
        events.record(ref, NORMAL, "Pulled", f'Container image "{spec.image}" already present on machine')
    return ready.image_ref
