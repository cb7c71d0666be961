"""A rich progress bar for training: epoch and batch, live loss, ETA; silent off a terminal."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["TrainProgress"]


class TrainProgress:
    """Context manager; ``batch(loss)`` after each step, ``epoch(metrics)`` after each epoch.

    When stderr is not a terminal (a pipe, a log file, CI) it prints nothing.
    """

    def __init__(self, epochs: int, batches: int, label: str = "train", done: int = 0) -> None:
        self.console = Console(file=sys.stderr)
        self.enabled = self.console.is_terminal
        self.epochs, self.batches, self.label, self.done = epochs, batches, label, done  # done: steps before
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.enabled,
            transient=True,
        )

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
