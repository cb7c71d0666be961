"""Stopping at a safe point on Ctrl-C (SIGINT) or SIGTERM.

Inside ``with StopRequest() as stop:`` the first SIGINT or SIGTERM only records the signal;
the training loop looks at ``stop.signum`` between steps, writes a checkpoint and raises
:class:`Interrupted`. What a second signal does depends on who holds the request:

- ``StopRequest()`` — a process that does the work itself (``droplab train``, a study on the
  local backend): a second signal stops it at once, raising :class:`Interrupted` wherever it is
  (every write is atomic and removes its temporary file, so what is on disk stays whole).
- ``StopRequest(at_once=False)`` — the driver of a study on a cluster: every signal is only
  recorded (``count``); the driver looks at it between results, cancels the jobs under way and
  ends (see ``droplab.studies.ray_backend``).

When a signal has ended the work (the block is left by :class:`Interrupted` or
:class:`StudyInterrupted`), later SIGINT/SIGTERM are ignored: the process is on its way out.

The exit status is the shell's convention, 128 + the signal: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

__all__ = ["StopRequest", "Interrupted", "StudyInterrupted", "WorkerLost", "exit_status", "SIGNALS"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_status(signum: int) -> int:
    return 128 + signum


class Interrupted(Exception):
    """The run stopped at a safe point after signal ``signum``; ``where`` says at which point, and
    ``directory`` is the run directory it can resume from (None: not known where it is raised)."""

    def __init__(self, signum: int, where: str, directory: Path | None = None) -> None:
        super().__init__(signum, where, directory)  # picklable: a worker's exception crosses to the parent
        self.signum, self.where, self.directory = signum, where, directory

    def __str__(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name} {self.where}"


class StudyInterrupted(Exception):
    """SIGINT/SIGTERM stopped a study; its finished runs and the running jobs' checkpoints stay in the store."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(signum, message)  # picklable: a worker's exception crosses to the parent
        self.signum, self.message = signum, message

    def __str__(self) -> str:
        return self.message


class StopRequest:
    """Records SIGINT/SIGTERM instead of dying; restores the old handlers on exit.

    ``signum`` is the first signal (None: none yet), ``count`` how many came. With
    ``at_once`` (the default) a second signal raises :class:`Interrupted` at once; without,
    every signal is only recorded. Outside the main thread signals cannot be caught; there
    it records nothing.
    """

    def __init__(self, at_once: bool = True) -> None:
        self.signum: int | None = None
        self.count = 0
        self.at_once = at_once
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
        elif self.at_once:
            raise Interrupted(self.signum, f"and stopped at once by a second signal ({signal.Signals(signum).name})")

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.count and exc_type is not None and issubclass(exc_type, (Interrupted, StudyInterrupted)):
            # A signal stopped the work: the process is on its way out with 128 + signum, and its
            # interpreter takes a moment to tear torch down. A signal that comes now must not turn
            # that exit into a traceback or a death by signal: ignored (SIG_IGN, which, unlike a
            # Python handler, the interpreter keeps while it finalizes).
            for s in self._old:
                signal.signal(s, signal.SIG_IGN)
            self._old.clear()
            return
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()


class WorkerLost(StudyInterrupted):
    """A worker died (SIGKILL, out of memory, a crash, its node lost) more often than a job may be
    retried: the study stops; the same command resumes.

    ``signum`` is the signal that killed it, where known (exit status 128 + it); SIGKILL (137) otherwise."""
