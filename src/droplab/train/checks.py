"""The checks a checkpoint passes before a run trusts it.

A checkpoint's SHA-256 (see :mod:`droplab.checkpoint`) proves the file is whole, not that
what it says is sound: a file can be written with a matching digest by anyone. Before a run
goes on from one, :func:`check_state` checks every field against the configuration the run
is resumed with: types, ranges (the epoch within the configured epochs, the step where the
epoch and batch say it is, the minibatch order a permutation of the training images), the
random generators' state sizes, the data's digest, the model's shapes and finite weights,
the optimizer's buffers. Any failure is a :class:`~droplab.checkpoint.CheckpointError` (a
:class:`CheckpointFieldError` where one field is at fault) that names the field.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import CheckpointError
from .config import FLOAT32_MAX, RUN_ONLY, batches_per_epoch, evaluated_epochs, with_defaults
from .metrics import HISTORY_KEYS
from .selection import best_row

if TYPE_CHECKING:
    from .state import TrainState

__all__ = ["CheckpointFieldError", "check_state", "check_config", "check_shapes"]

_GENERATOR_BYTES = torch.Generator().get_state().numel()
_MT_WORDS = 624  # numpy's and Python's Mersenne Twister


class CheckpointFieldError(CheckpointError):
    """A checkpoint whose ``field`` is not sound: ``problem`` says how."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.field, self.problem = field, problem

    def __str__(self) -> str:
        return f"checkpoint field {self.field!r} {self.problem}"


def _bad(field: str, problem: str) -> CheckpointFieldError:
    return CheckpointFieldError(field, problem)


def _int(state: Mapping, field: str, low: int, high: int) -> int:
    v = state[field]
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
        raise _bad(field, f"is {v!r}: expected an integer from {low} to {high}")
    return v


def _real(value: Any, field: str, low: float = 0.0, high: float = math.inf) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) \
            or not low <= value <= high:  # fmt: skip
        raise _bad(field, f"is {value!r}: expected a finite number in [{low:g}, {high:g}]")
    return float(value)


def _tensor(value: Any, field: str, dtype: torch.dtype, shape: tuple[int, ...], finite: bool = False) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise _bad(field, f"is a {type(value).__name__}: expected a tensor")
    if value.dtype != dtype or tuple(value.shape) != shape:
        raise _bad(field, f"is a {value.dtype} tensor of shape {tuple(value.shape)}: expected {dtype} of shape {shape}")
    if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise _bad(field, "holds NaN or infinite values: the checkpoint is damaged (a run never saves such weights)")
    return value


def check_config(state: Mapping, config: Mapping) -> None:
    """Refuse a checkpoint written for another configuration (the model would not fit, or worse, would).

    A field the checkpoint lacks (written before the field existed) is at its default; the
    fields no part of what a run computes (``RUN_ONLY``, such as ``threads``) may differ.
    """
    if not isinstance(state["config"], dict):
        raise _bad("config", f"is a {type(state['config']).__name__}: expected the run's configuration")
    saved, wanted = with_defaults(state["config"]), with_defaults(config)
    differ = [k for k in sorted(set(saved) | set(wanted)) if k not in RUN_ONLY and saved.get(k) != wanted.get(k)]
    if differ:
        shown = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, run {wanted.get(k)!r}" for k in differ)
        raise CheckpointError(f"checkpoint was written for another configuration ({shown})")


def check_shapes(model: nn.Module, saved: Any, field: str = "model") -> None:
    """Refuse weights of another architecture with one line per difference, not torch's traceback
    (``field``: the checkpoint's field that holds them)."""
    mine, where = model.state_dict(), "" if field == "model" else f" ({field})"
    if not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint does not fit the configured model{where}: no weights in it")

    def shape(v: Any) -> str:
        return str(tuple(v.shape)) if isinstance(v, torch.Tensor) else f"a {type(v).__name__}"

    diffs = [f"{k} missing" for k in mine if k not in saved] + [f"{k} unexpected" for k in saved if k not in mine]
    diffs += [
        f"{k}: checkpoint {shape(saved[k])}, model {tuple(v.shape)}"
        for k, v in mine.items()
        if k in saved and (not isinstance(saved[k], torch.Tensor) or saved[k].shape != v.shape)
    ]
    if diffs:
        more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
        raise CheckpointError(f"checkpoint does not fit the configured model{where}: {'; '.join(diffs[:3])}{more}")
    for k, v in mine.items():
        _tensor(saved[k], f"{field}.{k}", v.dtype, tuple(v.shape), finite=True)


def _check_kept(saved: Mapping, run: TrainState) -> None:
    """The kept epoch and weights (absent in older checkpoints: None): under ``select`` best_val,
    once an epoch is evaluated, the history's best epoch and weights of the model's shapes; else none."""
    best, weights = saved.get("best_epoch"), saved.get("best_weights")
    if run.config.select != "best_val" or not saved["history"]:
        for field, value in (("best_epoch", best), ("best_weights", weights)):
            if value is not None:
                raise _bad(field, f"is a {type(value).__name__}: expected none (no weights are kept yet)")
        return
    want = best_row(saved["history"])["epoch"]
    if best != want or type(best) is not int:
        raise _bad("best_epoch", f"is {best!r}: the history's best validation accuracy is epoch {want}'s")
    check_shapes(run.model, weights, "best_weights")


def _check_history(state: Mapping, eval_epochs: list[int]) -> None:
    history = state["history"]
    if not isinstance(history, list) or len(history) != len(eval_epochs):
        n = len(history) if isinstance(history, list) else type(history).__name__
        raise _bad("history", f"has {n} rows: expected {len(eval_epochs)}, one per evaluated epoch so far")
    for i, (row, epoch) in enumerate(zip(history, eval_epochs)):
        if not isinstance(row, dict) or any(k not in row for k in HISTORY_KEYS):
            raise _bad(f"history[{i}]", f"is not a metrics row (expected the keys {', '.join(HISTORY_KEYS)})")
        if row["epoch"] != epoch or type(row["epoch"]) is not int:
            raise _bad(f"history[{i}].epoch", f"is {row['epoch']!r}: expected {epoch}")
        for k, v in row.items():
            if k != "epoch":
                _real(v, f"history[{i}].{k}", 0.0, 1.0 if k.endswith("acc") else math.inf)


_SCHEDULED = ("lr", "momentum", "betas")  # what a learning-rate schedule changes as it goes


def _check_optimizer(saved: Any, optimizer: torch.optim.Optimizer, scheduler, step: int) -> None:
    """The optimizer's state: its settings those of the run (a schedule may have moved the
    learning rate and momentum), a buffer per parameter of that parameter's shape, finite."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    fresh = optimizer.state_dict()["param_groups"]
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) or \
            not isinstance(saved.get("param_groups"), list):  # fmt: skip
        raise _bad("optimizer", "is not an optimizer's state (expected 'state' and 'param_groups')")
    groups = saved["param_groups"]
    if len(groups) != len(fresh) or not all(isinstance(g, dict) and set(g) == set(f) for g, f in zip(groups, fresh)):
        raise _bad("optimizer.param_groups", f"are not those of the run's {type(optimizer).__name__}")
    for g, (group, want) in enumerate(zip(groups, fresh)):
        for k, v in want.items():
            field = f"optimizer.param_groups[{g}].{k}"
            if scheduler is not None and k in _SCHEDULED:
                values = v if isinstance(v, tuple) else (v,)
                got = group[k] if isinstance(group[k], tuple) and isinstance(v, tuple) else (group[k],)
                if len(got) != len(values):
                    raise _bad(field, f"is {group[k]!r}: expected a value like {v!r}")
                for x in got:
                    _real(x, field, 0.0, FLOAT32_MAX)
            elif group[k] != v or type(group[k]) is not type(v):
                raise _bad(field, f"is {group[k]!r}: the run's is {v!r}")
    wanted = _buffers(optimizer, scheduler)
    entries = saved["state"]
    if set(entries) != (set(range(len(params))) if step and wanted else set()):
        have = sorted(map(repr, entries))[:8]
        expected = f"one per parameter (0 to {len(params) - 1})" if step and wanted else "none (no step needs one)"
        raise _bad("optimizer.state", f"has entries for parameters {', '.join(have) or 'none'}: expected {expected}")
    for i, entry in entries.items():
        if not isinstance(entry, dict) or set(entry) != wanted:
            keys = ", ".join(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__
            raise _bad(f"optimizer.state[{i}]", f"holds {keys or 'nothing'}: expected {', '.join(sorted(wanted))}")
        for k, v in entry.items():
            field = f"optimizer.state[{i}].{k}"
            if k == "step":  # Adam's step count: a 0-dim float tensor, the run's steps
                count = v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v
                if count != step:
                    raise _bad(field, f"is {count!r}: the run has taken {step} steps")
            else:
                _tensor(v, field, params[i].dtype, tuple(params[i].shape), finite=True)


def _buffers(optimizer: torch.optim.Optimizer, scheduler) -> set[str]:
    """What the optimizer keeps per parameter once it has stepped (torch's names)."""
    if isinstance(optimizer, torch.optim.Adam):
        return {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if optimizer.defaults["amsgrad"] else set())
    cycled = getattr(scheduler, "cycle_momentum", False)  # OneCycleLR moves SGD's momentum from 0
    return {"momentum_buffer"} if cycled or any(g["momentum"] for g in optimizer.param_groups) else set()


_SCHEDULE_MOVES = ("last_epoch", "_step_count", "_last_lr")  # what a schedule's state changes as it steps


def _check_scheduler(saved: Any, scheduler, step: int) -> None:
    """A schedule's state: where it stands is the run's step; everything else is the run's own."""
    if scheduler is None:
        if saved is not None:
            raise _bad("scheduler", "holds a schedule's state, but the run has a constant learning rate")
        return
    fresh = scheduler.state_dict()
    if not isinstance(saved, dict) or set(saved) != set(fresh):
        raise _bad("scheduler", f"is not a {type(scheduler).__name__}'s state")
    for k, v in fresh.items():
        if k not in _SCHEDULE_MOVES and (saved[k] != v or type(saved[k]) is not type(v)):
            raise _bad(f"scheduler.{k}", f"is {saved[k]!r}: the run's is {v!r}")
    for k, want in (("last_epoch", step), ("_step_count", step + 1)):
        if saved[k] != want or type(saved[k]) is not int:
            raise _bad(f"scheduler.{k}", f"is {saved[k]!r}: expected {want} after {step} steps")
    last = saved["_last_lr"]
    if not isinstance(last, list) or len(last) != len(fresh["_last_lr"]):
        raise _bad("scheduler._last_lr", f"is {last!r}: expected {len(fresh['_last_lr'])} learning rate(s)")
    for x in last:
        _real(x, "scheduler._last_lr", 0.0, FLOAT32_MAX)


def _generator(value: Any, field: str) -> None:
    """A torch generator's state: its size, and one a generator accepts (tried on a throwaway one)."""
    _tensor(value, field, torch.uint8, (_GENERATOR_BYTES,))
    try:
        torch.Generator().set_state(value)
    except (RuntimeError, ValueError) as err:
        raise _bad(field, f"is not a generator's state ({err})") from None


def _check_rng(rng: Any) -> None:
    if not isinstance(rng, dict) or set(rng) != {"torch", "numpy", "python"}:
        raise _bad("rng", "is not the generators' state (expected torch, numpy and python)")
    _generator(rng["torch"], "rng.torch")
    np_state = rng["numpy"]
    if not isinstance(np_state, list) or len(np_state) != 5 or np_state[0] != "MT19937":
        raise _bad("rng.numpy", "is not numpy's MT19937 state")
    _tensor(np_state[1], "rng.numpy[1]", torch.int64, (_MT_WORDS,))
    if not isinstance(np_state[2], int) or not 0 <= np_state[2] <= _MT_WORDS or not isinstance(np_state[3], int) \
            or not isinstance(np_state[4], float):  # fmt: skip
        raise _bad("rng.numpy", "has a position or Gaussian cache outside numpy's")
    py_state = rng["python"]
    if not isinstance(py_state, list) or len(py_state) != 3 or not isinstance(py_state[1], list) \
            or len(py_state[1]) != _MT_WORDS + 1 or not all(isinstance(w, int) for w in py_state[1]):  # fmt: skip
        raise _bad("rng.python", f"is not Python's Mersenne Twister state ({_MT_WORDS + 1} integers)")
    try:  # what the generators themselves accept, tried on throwaway ones
        np.random.RandomState().set_state(("MT19937", np_state[1].numpy().astype(np.uint32), *np_state[2:]))
        if (np_state[1] < 0).any() or (np_state[1] >= 2**32).any():
            raise ValueError("words outside 32 bits")
        random.Random().setstate((py_state[0], tuple(py_state[1]), py_state[2]))
    except (ValueError, TypeError, OverflowError) as err:
        raise _bad("rng", f"holds a state the generators refuse ({err})") from None


def check_state(saved: Mapping, run: TrainState, n_train: int) -> None:
    """Check a loaded checkpoint against the run it is to continue; :class:`CheckpointError` naming
    the first bad field.

    Args:
        saved: the checkpoint's contents (:func:`droplab.checkpoint.load`).
        run: the run to continue, freshly started (:meth:`TrainState.start`): its configuration, its
            data's digest, and its model's, optimizer's and schedule's states as templates.
        n_train: the images an epoch draws its order from.
    """
    config = run.config.to_dict()
    missing = [f.name for f in dataclasses.fields(run) if f.name not in saved and not f.metadata["optional"]]
    if missing:
        raise CheckpointError(f"checkpoint lacks {', '.join(missing)}: not written by this version of droplab")
    check_config(saved, config)
    if saved["data_sha256"] != run.data_sha256:
        raise _bad("data_sha256", f"is {str(saved['data_sha256'])[:16]}…: the run was trained on other data than "
                   f"the data given now ({run.data_sha256[:16]}…)")  # fmt: skip
    epochs, batch_size, batches = config["epochs"], config["batch_size"], batches_per_epoch(run.config, n_train)
    epoch = _int(saved, "epoch", 1, epochs + 1)
    step = _int(saved, "step", 0, epochs * batches)
    next_i = _int(saved, "next_i", 0, max(0, (batches - 1) * batch_size))
    if next_i % batch_size:
        raise _bad("next_i", f"is {next_i}: expected a multiple of the batch size {batch_size}")
    if step != (epoch - 1) * batches + next_i // batch_size:
        raise _bad("step", f"is {step} with next_i {next_i} in epoch {epoch}: expected "
                   f"{(epoch - 1) * batches + next_i // batch_size} ({batches} steps an epoch, batch {batch_size})")
    order = saved["order"]
    if next_i and order is None:
        raise _bad("order", "is missing in the middle of an epoch")
    if order is not None:
        _tensor(order, "order", torch.int64, (n_train,))
        if not torch.equal(order.sort().values, torch.arange(n_train)):
            raise _bad("order", f"is not a permutation of the {n_train} training images")
    _real(saved["loss_sum"], "loss_sum")
    _real(saved["seconds"], "seconds")
    _int(saved, "threads", 1, 1 << 16)
    _check_history(saved, [e for e in evaluated_epochs(epochs, config["eval_every"]) if e < epoch])
    check_shapes(run.model, saved["model"])
    _check_kept(saved, run)
    _check_optimizer(saved["optimizer"], run.optimizer, run.scheduler, step)
    _check_scheduler(saved["scheduler"], run.scheduler, step)
    _generator(saved["shuffle"], "shuffle")
    _generator(saved["augment"], "augment")
    _check_rng(saved["rng"])
