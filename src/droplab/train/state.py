"""Where a run stands and what it trains with (:class:`TrainState`), as a checkpoint holds it; the
optimizer and learning-rate schedule a configuration builds.

:class:`TrainState` is the checkpoint's schema: its fields, in order, are the checkpoint's
(written once, here). :meth:`TrainState.to_checkpoint` turns it into plain values and tensors
for :func:`droplab.checkpoint.save`; :meth:`TrainState.from_checkpoint` puts a loaded one back.

Before a run goes on from a checkpoint, :func:`~droplab.train.checks.check_state` checks every
field of it: a checkpoint's digest proves the file whole, not what it says sound.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import checkpoint
from ..checkpoint import CheckpointError, rng_state, set_rng_state
from ..models import build_model
from .checks import check_state
from .config import (
    AUGMENT_STREAM,
    SHUFFLE_STREAM,
    TrainConfig,
    batches_per_epoch,
    generator,
)

__all__ = ["TrainState", "FIELDS", "CheckpointWriteError", "recorded_threads", "make_optimizer", "make_scheduler"]


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names, with its learning rate, momentum and weight decay."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps: int):
    """The learning-rate schedule ``cfg`` names over ``steps`` optimizer steps; None for a constant rate."""
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=steps)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return None


class CheckpointWriteError(OSError):
    """A checkpoint could not be written to ``path`` (``errno``, ``why``: the system's reason);
    the previous one, if there was one (``had_previous``), is intact."""

    def __init__(self, path: str | os.PathLike, errno: int | None, why: str, had_previous: bool) -> None:
        kept = "the previous one is intact" if had_previous else "there was none before it: the run starts over"
        super().__init__(errno, f"cannot write {path}: {why}; {kept}")
        self.path, self.why, self.had_previous = Path(path), why, had_previous

    def __reduce__(self):  # OSError pickles its (errno, strerror): a worker's error crosses to its parent
        return type(self), (self.path, self.errno, self.why, self.had_previous)


class GlobalGenerators:
    """torch's, numpy's and Python's global generators, whose state a checkpoint holds as ``rng``
    (torch's: the initial weights; droplab's dropout draws its masks' seeds from it)."""

    def state_dict(self) -> dict[str, Any]:
        return rng_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(state)


def _restored(kind: str, optional: bool = False) -> Any:
    """A field of the checkpoint: ``"where"`` (where the run stands: put back as it is), ``"state"`` (an
    object whose state is saved and loaded back), ``"identity"`` (what run it is: checked, never put back).
    ``optional``: added after checkpoints were first written; one without it reads it as None."""
    return dataclasses.field(metadata={"kind": kind, "optional": optional})


@dataclass
class TrainState:
    """Everything a run changes as it goes, and what identifies it; the fields are the checkpoint's.

    A fresh run starts with :meth:`start`; a checkpoint's is put back with :meth:`from_checkpoint`.
    """

    config: TrainConfig = _restored("identity")
    epoch: int = _restored("where")  # the epoch under way, or the next to start
    next_i: int = _restored("where")  # where in ``order`` the epoch's next batch starts
    order: torch.Tensor | None = _restored("where")  # the epoch's minibatch order (None: between epochs)
    loss_sum: float = _restored("where")  # the epoch's training loss so far, summed over its images
    step: int = _restored("where")  # optimizer steps taken
    history: list[dict] = _restored("where")  # a metrics row per evaluated epoch so far
    seconds: float = _restored("where")  # training time so far
    model: nn.Module = _restored("state")
    optimizer: torch.optim.Optimizer = _restored("state")
    scheduler: Any = _restored("state")  # a learning-rate schedule, or None for a constant rate
    shuffle: torch.Generator = _restored("state")  # the minibatch order's generator
    augment: torch.Generator = _restored("state")  # the augmentation's generator
    rng: GlobalGenerators = _restored("state")
    threads: int = _restored("identity")  # the thread count the run uses (bit for bit needs the same)
    data_sha256: str = _restored("identity")  # the data's digest
    # select="best_val": the evaluated epoch best on validation so far, and a copy of its weights (else None)
    best_epoch: int | None = _restored("where", optional=True)
    best_weights: dict[str, torch.Tensor] | None = _restored("where", optional=True)

    @classmethod
    def start(cls, cfg: TrainConfig, n_train: int, threads: int, data_digest: str) -> TrainState:
        """A fresh run of ``cfg`` on ``n_train`` images: the model's initial weights drawn with
        ``cfg.seed``, the optimizer, the schedule, the generators of its own streams."""
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, cfg.hidden, cfg.dropout, cfg.dropout_impl, cfg.noise, cfg.norm,
                            cfg.input_dropout, cfg.activation, vit=cfg.vit_options() if cfg.model == "vit" else None)
        optimizer = make_optimizer(cfg, model.parameters())
        scheduler = make_scheduler(cfg, optimizer, cfg.epochs * batches_per_epoch(cfg, n_train))
        shuffle, augment = generator(cfg.seed, SHUFFLE_STREAM), generator(cfg.seed, AUGMENT_STREAM)
        return cls(
            config=cfg, epoch=1, next_i=0, order=None, loss_sum=0.0, step=0, history=[], seconds=0.0,
            model=model, optimizer=optimizer, scheduler=scheduler, shuffle=shuffle, augment=augment,
            rng=GlobalGenerators(), threads=threads, data_sha256=data_digest, best_epoch=None, best_weights=None,
        )  # fmt: skip

    @classmethod
    def from_checkpoint(
        cls, saved: Mapping, cfg: TrainConfig, n_train: int, threads: int, data_digest: str
    ) -> TrainState:
        """The run ``saved`` (a loaded checkpoint) stands at, once :func:`check_state` has found it
        sound for ``cfg`` on this data; the arguments are :meth:`start`'s."""
        state = cls.start(cfg, n_train, threads, data_digest)
        check_state(saved, state, n_train)
        for f in dataclasses.fields(state):
            if f.metadata["kind"] == "where":
                setattr(state, f.name, saved.get(f.name) if f.metadata["optional"] else saved[f.name])
            elif f.metadata["kind"] == "state":
                try:
                    _load_state(getattr(state, f.name), saved[f.name])
                except (RuntimeError, KeyError, ValueError) as err:
                    raise CheckpointError(f"checkpoint does not fit the configured model: {err}") from None
        return state

    def to_checkpoint(self) -> dict[str, Any]:
        """The checkpoint's contents: plain values and tensors (loadable with ``weights_only``)."""
        return {f.name: _state_of(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def save(self, path: str | os.PathLike) -> None:
        """Write the checkpoint to ``path`` atomically; :class:`CheckpointWriteError` when it cannot."""
        had_previous = Path(path).exists()
        try:
            checkpoint.save(path, self.to_checkpoint())
        except OSError as err:
            raise CheckpointWriteError(path, err.errno, err.strerror or str(err), had_previous) from None


FIELDS = tuple(f.name for f in dataclasses.fields(TrainState))  # a checkpoint's fields


def _state_of(value: Any) -> Any:
    """What a checkpoint holds of a field's value: a generator's state, an object's ``state_dict``,
    the configuration as a dict, or the value itself."""
    if isinstance(value, TrainConfig):
        return value.to_dict()
    if isinstance(value, torch.Generator):
        return value.get_state()
    return value.state_dict() if hasattr(value, "state_dict") else value


def _load_state(obj: Any, state: Any) -> None:
    """Put ``state`` (:func:`_state_of`'s) back into ``obj``; None (no schedule) has none."""
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    elif obj is not None:
        obj.load_state_dict(state)


def recorded_threads(saved: Mapping | None) -> int | None:
    """The thread count a checkpoint recorded, where it is one (checked with the rest before use)."""
    threads = (saved or {}).get("threads")
    return threads if type(threads) is int and threads >= 1 else None
