"""Signal names as the API knows them (Container.lifecycle.stopSignal) and images write them (STOPSIGNAL).

Pure: names to Linux numbers, no effects.
"""

from __future__ import annotations

# The API server's supportedStopSignalsLinux, with their numbers on Linux (SIGRTMIN is glibc's 34, as
# Go's and moby's signal tables have it).
_NAMED = {
    "SIGABRT": 6, "SIGALRM": 14, "SIGBUS": 7, "SIGCHLD": 17, "SIGCLD": 17, "SIGCONT": 18, "SIGFPE": 8,
    "SIGHUP": 1, "SIGILL": 4, "SIGINT": 2, "SIGIO": 29, "SIGIOT": 6, "SIGKILL": 9, "SIGPIPE": 13,
    "SIGPOLL": 29, "SIGPROF": 27, "SIGPWR": 30, "SIGQUIT": 3, "SIGSEGV": 11, "SIGSTKFLT": 16, "SIGSTOP": 19,
    "SIGSYS": 31, "SIGTERM": 15, "SIGTRAP": 5, "SIGTSTP": 20, "SIGTTIN": 21, "SIGTTOU": 22, "SIGURG": 23,
    "SIGUSR1": 10, "SIGUSR2": 12, "SIGVTALRM": 26, "SIGWINCH": 28, "SIGXCPU": 24, "SIGXFSZ": 25,
}
SIGRTMIN, SIGRTMAX = 34, 64
STOP_SIGNALS: dict[str, int] = {
    **_NAMED, "SIGRTMIN": SIGRTMIN, "SIGRTMAX": SIGRTMAX,
    **{f"SIGRTMIN+{n}": SIGRTMIN + n for n in range(1, 16)},
    **{f"SIGRTMAX-{n}": SIGRTMAX - n for n in range(1, 15)},
}


def parse_signal(value: str) -> int | None:
    """A signal as moby's ParseSignal reads an image config's StopSignal: `SIGQUIT`, `QUIT`, `3`; None if unknown."""
    if value.isdigit():
        number = int(value)
        return number if 0 < number <= SIGRTMAX else None
    name = value.upper()
    return STOP_SIGNALS.get(name if name.startswith("SIG") else "SIG" + name)
