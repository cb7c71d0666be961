"""Rich progress bars, silent off a terminal: a run's (epoch and batch, live loss, ETA) and a
study's (one bar over all its jobs: finished, running, retried, ETA)."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["TrainProgress", "StudyProgress"]


def _bar(console: Console, *columns) -> Progress:
    """A transient bar with droplab's first columns (label, bar, done/total) and ``columns``; off
    a terminal, disabled."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *columns,
                    console=console, disable=not console.is_terminal, transient=True)  # fmt: skip


class TrainProgress:
    """Context manager; ``batch(loss)`` after each step, ``epoch(metrics)`` after each epoch.

    When stderr is not a terminal (a pipe, a log file, CI) it prints nothing.
    """

    def __init__(self, epochs: int, batches: int, label: str = "train", done: int = 0) -> None:
        self.console = Console(file=sys.stderr)
        self.enabled = self.console.is_terminal
        self.epochs, self.batches, self.label, self.done = epochs, batches, label, done  # done: steps before
        self._progress = _bar(self.console, TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
                              TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip

    def __enter__(self) -> TrainProgress:
        self._progress.__enter__()
        total, epoch = self.epochs * self.batches, self.done // self.batches + 1
        self._all = self._progress.add_task(self.label, total=total, completed=self.done, loss=float("nan"))
        self._epoch = self._progress.add_task(
            f"epoch {epoch}", total=self.batches, completed=self.done % self.batches, loss=float("nan")
        )
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def batch(self, loss: float) -> None:
        if self.enabled:
            self._progress.update(self._all, advance=1, loss=loss)
            self._progress.update(self._epoch, advance=1, loss=loss)

    def epoch(self, m: dict) -> None:
        if not self.enabled:
            return
        self._progress.console.print(
            f"{self.label} epoch {m['epoch']:>3}: train_loss {m['train_loss']:.4f}  "
            f"train_acc {m['train_acc']:.4f}  val_loss {m['val_loss']:.4f}  val_acc {m['val_acc']:.4f}"
        )
        if m["epoch"] < self.epochs:
            self._progress.reset(self._epoch, description=f"epoch {m['epoch'] + 1}")


class StudyProgress:
    """Context manager; called with a study's tally (anything with ``total``, ``finished``,
    ``trained``, ``running`` and ``retried``) whenever it changes: one bar over all the study's jobs.

    The ETA is the time per job trained since the bar began (so runs found in the store do not
    count as fast ones), times the jobs left. Off a terminal it prints nothing.
    """

    def __init__(self, label: str, console: Console | None = None) -> None:
        self.console = console or Console(file=sys.stderr)
        self.enabled = self.console.is_terminal
        self.label, self.start = label, time.monotonic()
        self._progress = _bar(self.console, TextColumn("{task.fields[state]}"), TimeElapsedColumn())

    def __enter__(self) -> StudyProgress:
        self._progress.__enter__()
        self._task = self._progress.add_task(self.label, total=None, state="")
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def __call__(self, tally) -> None:
        if not self.enabled:
            return
        state = f"{tally.running} running"
        if tally.retried:
            state += f", {tally.retried} retried"
        if tally.trained and tally.total > tally.finished:
            left = (time.monotonic() - self.start) / tally.trained * (tally.total - tally.finished)
            state += f", ETA {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"
        self._progress.update(self._task, total=tally.total, completed=tally.finished, state=state)
