"""An image made ready for a container's start, with the kubelet's Pulling and Pulled events; a start that
failed, with its events."""

from __future__ import annotations

from nodeagent.agent.events import NORMAL, WARNING, EventRecorder, ObjectRef
from nodeagent.errors import RuntimeStartError
from nodeagent.runtime.base import ContainerSpec, Runtime
from nodeagent.timeformat import go_duration

IMAGE_ERRORS = ("ErrImageNeverPull", "InvalidImageName")  # their events say only the reason


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


def record_start_failure(events: EventRecorder, ref: ObjectRef, image: str | None, exc: RuntimeStartError) -> None:
    """The kubelet's events for a start that failed: a pull's two, or the reason (or message) of any other."""
    if exc.reason == "ErrImagePull":
        events.record(ref, WARNING, "Failed", f'Failed to pull image "{image}": {exc.message}')
        events.record(ref, WARNING, "Failed", "Error: ErrImagePull")
        return
    if exc.reason == "ErrImageNeverPull":
        events.record(ref, WARNING, "ErrImageNeverPull", exc.message)
    events.record(ref, WARNING, "Failed", f"Error: {exc.reason if exc.reason in IMAGE_ERRORS else exc.message}")
