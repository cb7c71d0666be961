"""Stopping at a safe point on Ctrl-C (SIGINT) or SIGTERM.

Inside ``with StopRequest() as stop:`` the first SIGINT or SIGTERM only records the signal;
the training loop looks at ``stop.signum`` between steps, writes a checkpoint and raises
:class:`Interrupted`. A second signal is not delayed: SIGINT raises ``KeyboardInterrupt``
at once, SIGTERM ends the process (what is on disk stays whole: every write is atomic).
The exit status is the shell's convention, 128 + the signal: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import signal
import threading

__all__ = ["StopRequest", "Interrupted", "StudyInterrupted", "exit_status"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_status(signum: int) -> int:
    return 128 + signum


class Interrupted(Exception):
    """The run stopped at a safe point after a signal; ``checkpoint`` is where it can resume from."""

    def __init__(self, signum: int, where: str) -> None:
        self.signum, self.where = signum, where
        super().__init__(f"interrupted by {signal.Signals(signum).name} {where}")


class StudyInterrupted(Exception):
    """SIGINT/SIGTERM stopped a study; its finished runs and the running jobs' checkpoints stay in the store."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(signum, message)  # picklable: a worker's exception crosses to the parent
        self.signum = signum

    def __str__(self) -> str:
        return self.args[1]


class StopRequest:
    """Records the first SIGINT/SIGTERM instead of dying; restores the old handlers on exit.

    Outside the main thread signals cannot be caught; there it records nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            return
        signal.signal(signum, self._old.get(signum, signal.SIG_DFL))  # a second signal is not delayed
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.raise_signal(signum)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()
