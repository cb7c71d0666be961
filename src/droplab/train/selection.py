"""The epoch a run ends with (``TrainConfig.select``): the last evaluated one, or the one best on validation.

Under ``select="best_val"`` a run keeps, as it goes, a copy of the weights of the evaluated
epoch with the highest validation accuracy (the earliest on ties), as early stopping keeps
them; the checkpoint holds the copy and its epoch (:class:`~droplab.train.state.TrainState`'s
``best_epoch`` and ``best_weights``), so a resumed run keeps the same. At the end the model
gets those weights back, and the summary reads that epoch's row; the test set is evaluated
once, after that, on them. Under ``select="last"`` nothing is copied.

Examples::

    >>> rows = [{"epoch": 1, "val_acc": 0.8}, {"epoch": 2, "val_acc": 0.9}, {"epoch": 3, "val_acc": 0.9}]
    >>> best_row(rows)["epoch"]  # the earliest of the best
    2
    >>> best_row([]) is None
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .state import TrainState

__all__ = ["best_row", "keep_best", "select_final"]


def best_row(history: Sequence[dict]) -> dict | None:
    """The metrics row with the highest ``val_acc``, the earliest of those on ties; None for no rows."""
    return max(history, key=lambda row: row["val_acc"]) if history else None  # max keeps the first maximum


def keep_best(state: TrainState, row: dict) -> None:
    """Under ``best_val``: keep a copy of the model's weights when ``row`` (the epoch just evaluated)
    has a higher validation accuracy than the kept epoch's (strictly: the earliest stays on ties)."""
    if state.config.select != "best_val":
        return
    kept = next((r for r in state.history if r["epoch"] == state.best_epoch), None)
    if kept is None or row["val_acc"] > kept["val_acc"]:
        state.best_epoch = row["epoch"]
        state.best_weights = {k: v.detach().clone() for k, v in state.model.state_dict().items()}


def select_final(state: TrainState) -> dict:
    """The selected epoch's metrics row, once training is done; under ``best_val`` the model gets
    the kept weights back (what the test set is then evaluated on, and what the run returns)."""
    if state.config.select != "best_val":
        return state.history[-1]
    with torch.no_grad():
        state.model.load_state_dict(state.best_weights)
    return next(r for r in state.history if r["epoch"] == state.best_epoch)
