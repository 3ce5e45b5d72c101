"""After an agent restart: the attempts a pod began after its last save that reached the disk.

A save that cannot be written (the state directory full) is tried again every second
(nodeagent.agent.pods); an agent killed before then leaves a state file that knows fewer attempts than
ran. Each attempt's log file (<logs>/<pod>/<container>/<attempt>.log, made by the runtime as the attempt
starts, outside the state directory), written after the state file, proves that the attempt began after
that save, as the kubelet counts restarts from the log directory when its runtime has lost them. The
container's record catches up with that count, so that it never goes back, and the newest attempt is taken
back instead of the saved one, which ended: watched again if it runs, else its end read from the runtime's
records (conmon's exit file, containerd's exited container) as for any container that ended while the agent
was away.
"""

from __future__ import annotations

import datetime as dt
import logging
import os

from nodeagent.agent.worker import PodWorker
from nodeagent.runtime.base import AdoptionRecord, FoundContainer
from nodeagent.runtime.logs import highest_attempt

log = logging.getLogger(__name__)


def unsaved_attempts(worker: PodWorker, state_file: str) -> dict[str, int]:
    """Its containers with an attempt their saved record does not know, whose log file was written after
    the state file (a start that failed before the last save made its log file too): the highest such
    attempt. Blocking: run it in a thread."""
    try:
        saved_at = os.stat(state_file).st_mtime
    except OSError:
        return {}
    found = {}
    for name, record in worker.records.items():
        highest = highest_attempt(os.path.dirname(worker.context.log_path(name, 0)), written_after=saved_at)
        if highest is not None and highest >= record.next_attempt:
            found[name] = highest
    return found


def catch_up(worker: PodWorker, unsaved: dict[str, int], running: list[FoundContainer],
             ended: dict[str, AdoptionRecord], now: dt.datetime) -> None:
    """Each container of `unsaved` counts its attempts up to the newest; that attempt is taken back if it is
    among the pod's `running` containers, or its end read if it is in `ended` (the runtime's record of each
    container's newest attempt that ended), else known to have ended unrecorded (records.caught_up)."""
    for name, highest in unsaved.items():
        record = worker.records[name]
        live = max((f for f in running if f.name == name and f.attempt >= record.next_attempt),
                   key=lambda f: f.attempt, default=None)
        attempt = live.attempt if live is not None else highest
        worker.records[name] = record.caught_up(attempt, now)
        adoptable = live.saved if live is not None else ended.get(name)
        worker.slots[name].adoptable = adoptable
        how = ("the newest runs: taken back" if live is not None else
               "the newest ended: how, from the runtime" if adoptable is not None else
               "the newest is not running: its end is unknown")
        log.warning("pod=%s container=%s: attempts up to %d began after its last saved state (%d); %s", worker.key,
                    name, attempt, record.restart_count, how)
