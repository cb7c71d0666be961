"""A study's plan before it runs: how many runs, and about how long they take.

A study of V configurations over S seeds is V x S training runs. Before any is planned in
detail, :func:`check_size` refuses plans over a limit (a million seeds is a typo, not a
study). :func:`estimate_seconds` then puts a figure on the runs to train: each run's steps
and evaluated images, at the speed of one step and one evaluation pass of its kind of run timed
on this machine, scaled by how long the runs this store already holds took against the same
estimate of them.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from ..train.config import TrainConfig, batches_per_epoch, evaluation_count
from ..train.timing import time_step

__all__ = ["MAX_RUNS", "PlanError", "check_size", "run_steps", "estimate_seconds", "format_seconds"]

MAX_RUNS = 10_000  # more runs than this in one study call is refused unless the caller raises the limit
# A run's cost per epoch beyond its steps and evaluations (the shuffle, the rows it keeps): not measured, small
# beside an epoch of steps. How far the whole estimate is off, measured on a quiet 2-core AMD EPYC (docs/studies.md):
# the transformer study printed 6 min, up to 9 if its grids widened, and took 6.5 min with its grids widened; the
# schedules study printed 7 min, up to 10, and took 4.4 min.
EPOCH_SECONDS = 0.05


class PlanError(ValueError):
    """A plan of ``configurations`` x ``seeds`` runs (and ``tuning`` runs), over the ``limit`` of runs for one study."""

    def __init__(self, configurations: int, seeds: int, limit: int, tuning: int = 0) -> None:
        super().__init__(configurations, seeds, limit, tuning)
        self.configurations, self.seeds, self.limit, self.tuning = configurations, seeds, limit, tuning
        self.runs = configurations * seeds + tuning

    def __str__(self) -> str:
        tuning = f", and {self.tuning:,} tuning runs" if self.tuning else ""
        return (f"{self.runs:,} runs ({self.configurations} configurations x {self.seeds:,} seeds{tuning}) is over "
                f"the limit of {self.limit:,} runs for one study")


def check_size(configurations: int, seeds: int, limit: int = MAX_RUNS, tuning: int = 0) -> int:
    """The number of runs of a plan, ``tuning`` runs included; :class:`PlanError` when it is over ``limit``.

    Examples::

        >>> check_size(2, 5, tuning=12)
        22
        >>> check_size(2, 1_000_000)
        Traceback (most recent call last):
        ...
        droplab.studies.plan.PlanError: 2,000,000 runs (2 configurations x 1,000,000 seeds) is over the limit ...
    """
    runs = configurations * seeds + tuning
    if runs > limit:
        raise PlanError(configurations, seeds, limit, tuning)
    return runs


_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
# What a run's step costs depends on these fields only: runs that share them share one timing
_COST_FIELDS = ("model", "hidden", "dropout", "dropout_impl", "noise", "norm", "input_dropout", "activation",
                "batch_size", "optimizer", "momentum", "weight_decay", "schedule", "max_norm", "augment", "precision",
                "threads", "eval_batch_size",
                "vit_patch", "vit_width", "vit_depth", "vit_heads", "vit_attention_dropout", "vit_projection_dropout",
                "vit_mlp_dropout", "vit_drop_path")  # fmt: skip


def run_steps(train: Mapping[str, Any], n_train: int, n_val: int, n_test: int) -> tuple[int, int]:
    """One run's optimizer steps, and the images its evaluations pass forward (the training images
    the train-set metrics measure and the validation images at every evaluated epoch, the test set once).
    Under ``split`` d2l a run trains on the validation images too and validates on the test set.

    Examples::

        >>> run_steps({"epochs": 10, "batch_size": 256}, 55_000, 5_000, 10_000)
        (2150, 610000)
    """
    cfg = _config(train)
    if cfg.split == "d2l":
        n_train, n_val = n_train + n_val, n_test
    used = cfg.train_size or n_train
    evaluated = (min(cfg.eval_train_size or used, used) + n_val) * evaluation_count(cfg.epochs, cfg.eval_every)
    return cfg.epochs * batches_per_epoch(cfg, used), evaluated + n_test


def _config(train: Mapping[str, Any]) -> TrainConfig:
    """A job's training configuration (a mapping, perhaps from a stored record's JSON) as a
    :class:`TrainConfig`, the fields it leaves out at their defaults."""
    return TrainConfig(**{k: v for k, v in train.items() if k in _FIELDS})


def _plain(value: Any) -> Any:
    """A field's value as a key: a list (from a stored record's JSON) as the tuple a planned job holds."""
    return tuple(value) if isinstance(value, list) else value


class _Timings:
    """Seconds of a step and of evaluating an image for each kind of run, timed once per kind on
    this machine (:func:`droplab.train.timing.time_step`)."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[float, float]] = {}

    def __call__(self, train: Mapping[str, Any]) -> tuple[float, float]:
        key = repr([_plain(train.get(name)) for name in _COST_FIELDS])
        if key not in self.seen:
            self.seen[key] = time_step(_config(train))
        return self.seen[key]


def estimate_seconds(
    todo: Iterable[Mapping[str, Any]], stored: Iterable[Mapping[str, Any]], n_train: int, n_val: int, n_test: int
) -> tuple[float, str]:
    """About how long training ``todo`` (jobs) takes, and what the figure rests on.

    Each kind of run (its model, batch size, optimizer, threads: what a step costs) has one
    training step and one evaluation pass timed on this machine; a run is its steps and its
    evaluated images at those rates, plus :data:`EPOCH_SECONDS` an epoch. ``stored``: finished
    records in the store; where there are some that trained to the end (not diverged), the median
    of their measured seconds over this estimate of them scales the figure (the machine's load,
    the data's handling), else it stands as timed.
    """
    timings = _Timings()

    def work(train: Mapping[str, Any]) -> float:
        steps, images = run_steps(train, n_train, n_val, n_test)
        step, image = timings(train)
        return step * steps + image * images + EPOCH_SECONDS * train["epochs"]

    total = sum(work(job["train"]) for job in todo)
    kinds = len(timings.seen)
    ratios = [r["summary"]["seconds"] / work(r["job"]["train"]) for r in stored
              if "summary" in r]  # a diverged run stopped early: its time says nothing of a whole run's
    if ratios:
        return statistics.median(ratios) * total, f"from the {len(ratios)} runs already in the store"
    return total, f"one step of each of its {kinds} kinds of run timed on this machine"


def format_seconds(seconds: float) -> str:
    """``42 s``, ``7 min``, ``3.2 h``, ``4.0 days``.

    Examples::

        >>> [format_seconds(s) for s in (42, 420, 11_520, 345_600)]
        ['42 s', '7 min', '3.2 h', '4.0 days']
    """
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
