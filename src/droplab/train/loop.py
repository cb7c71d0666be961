"""The training loop: :func:`fit`, and the pieces of a step beside it.

Per epoch: the minibatches in an order drawn from the run's shuffling generator, each step at
the dropout rates of the run's schedule (:mod:`droplab.train.dropout_schedule`), a metrics
row every ``eval_every`` epochs and after the last (:mod:`droplab.train.metrics`), and a
checkpoint (:class:`~droplab.train.state.TrainState`). The same seed and thread count give
the same numbers bit for bit: the model's initial weights and the dropout masks come from
torch's global generator seeded with ``seed``; the minibatch order, the training subset and
the augmentation's shifts from generators of their own. At the end, the selected epoch's
weights (:mod:`droplab.train.selection`) and the test set, evaluated once, on them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import IMAGE_SHAPE, FashionMNIST
from ..interrupt import Interrupted, StopRequest
from ..kernels import cpu as cpu_kernel
from ..noise import max_norm_
from ..threads import use_threads
from .config import SUBSET_STREAM, TrainConfig, batches_per_epoch, evaluates, generator
from .dropout_schedule import DropoutSchedule
from .metrics import before_last_step, metrics_row, summarize
from .precision import autocast, resolve
from .resources import check_run
from .selection import keep_best, select_final
from .state import TrainState, recorded_threads
from .step import WrittenOut, written_out

__all__ = ["RunResult", "Diverged", "fit", "shift_images"]


@dataclass
class RunResult:
    """A finished run: a metrics row per evaluated epoch, the summary, the model with the selected
    epoch's weights (``select``), the run directory it was written to (None for :func:`fit`), and
    per test image, in the data's order, whether the model classified it right (``test_acc`` is
    its mean, from the same evaluation)."""

    history: list[dict]
    summary: dict
    model: nn.Module
    directory: Path | None = None
    test_correct: np.ndarray | None = None


class Diverged(RuntimeError):
    """A non-finite loss or gradient at ``epoch``, ``step``: ``what`` was not finite, with learning
    rate ``lr``. The run stops before the step that would spread it; ``directory``: the run
    directory holding its last good checkpoint, where there is one."""

    def __init__(self, epoch: int, step: int, what: str, lr: float, directory: Path | None = None) -> None:
        super().__init__(epoch, step, what, lr, directory)
        self.epoch, self.step, self.what, self.lr, self.directory = epoch, step, what, lr, directory

    def __str__(self) -> str:
        return (f"training diverged at epoch {self.epoch}, step {self.step}: {self.what}; "
                f"try a smaller learning rate than {self.lr:g} (for example {self.lr / 10:g})")  # fmt: skip


def fit(cfg: TrainConfig, data: FashionMNIST, on_batch: Callable[[float], None] | None = None,
        on_epoch: Callable[[dict], None] | None = None, checkpoint: str | Path | None = None,
        resume: dict | None = None, stop: StopRequest | None = None, checkpoint_interval: float = 0.0) -> RunResult:
    """Train the model ``cfg`` describes on ``data``; return per-epoch history and a summary.

    Args:
        on_batch, on_epoch: called with each step's loss, and each metrics row.
        checkpoint: a file to write a checkpoint to, atomically, after every epoch (and every
            ``cfg.checkpoint_every`` steps); ``checkpoint_interval``: seconds, an end-of-epoch
            checkpoint younger than that is skipped (when writing would take longer than training).
        resume: a loaded checkpoint to go on from: the run ends bit for bit as the uninterrupted one.
        stop: a :class:`~droplab.interrupt.StopRequest`; after a signal, a checkpoint and ``Interrupted``.

    Raises:
        Diverged: a non-finite loss or gradient, before the optimizer step that would use it.
    """
    # --- the run's set-up: the configuration checked against the data and this machine
    check_run(cfg, data)
    # bit for bit needs the thread count of the run's first part, when the caller does not set one
    threads, threads_note = use_threads(cfg.threads if cfg.threads is not None else recorded_threads(resume))
    precision = resolve(cfg.precision)  # bf16 where the CPU computes it natively, else fp32 and a note
    (train_x, train_y), val = training_set(cfg, data), validation_set(cfg, data)
    n, eval_n = len(train_x), min(cfg.eval_train_size or len(train_x), len(train_x))
    train_eval = train_x[:eval_n], train_y[:eval_n]  # the training images the train-set metrics measure
    used = n - n % cfg.batch_size if cfg.drop_last else n  # images an epoch trains on

    # --- restore: a fresh run, or where the checkpoint stands (each of its fields checked first)
    state = TrainState.start(cfg, n, threads, data.digest) if resume is None else \
        TrainState.from_checkpoint(resume, cfg, n, threads, data.digest)  # fmt: skip
    saver, start = Checkpointer(checkpoint, checkpoint_interval), time.perf_counter() - state.seconds
    written = written_out(state.model, precision[0])  # the step without autograd, where the model allows
    dropout = DropoutSchedule(cfg.dropout_schedule, state.model, batches_per_epoch(cfg, n))  # the rates per step

    for epoch in range(state.epoch, cfg.epochs + 1):
        # --- the epoch's steps, from where the run stands
        state.epoch = epoch
        state.model.train()
        if state.order is None:
            state.order, state.next_i, state.loss_sum = torch.randperm(n, generator=state.shuffle), 0, 0.0
        before, measured = cfg.eval_before_last_step and evaluates(epoch, cfg.epochs, cfg.eval_every), {}
        for i in range(state.next_i, used, cfg.batch_size):
            if before and i + cfg.batch_size >= used:  # the epoch's final step comes next
                measured = before_last_step(state.model, cfg, val, precision[0])
            idx = state.order[i : i + cfg.batch_size]
            x, y = train_x.index_select(0, idx), train_y.index_select(0, idx)  # 4x faster than x[idx]
            dropout.at(epoch, state.step)  # a function of where the run stands: the same on resume
            loss = train_step(state, x, y, precision[0], written)
            state.loss_sum, state.next_i = state.loss_sum + loss * len(idx), i + cfg.batch_size
            if on_batch is not None:
                on_batch(loss)
            # --- a checkpoint within the epoch: asked for by a signal, or every checkpoint_every steps
            stopping = _stop_asked(stop)
            if state.next_i < used and (stopping or (cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0)):
                saver.save(state, time.perf_counter() - start)
                if stopping:
                    raise Interrupted(stop.signum, f"at epoch {epoch}, step {state.step}")

        # --- evaluation: every eval_every epochs, and after the last
        if evaluates(epoch, cfg.epochs, cfg.eval_every):
            row = {**metrics_row(epoch, state.loss_sum / used, state.model, cfg, train_eval, val, precision[0]),
                   **measured}  # fmt: skip
            keep_best(state, row)
            state.history.append(row)
            if on_epoch is not None:
                on_epoch(row)

        # --- the checkpoint of the next epoch's start (younger than checkpoint_interval: only to stop)
        state.epoch, state.next_i, state.order, state.loss_sum = epoch + 1, 0, None, 0.0
        stopping = _stop_asked(stop) and epoch < cfg.epochs
        saver.save(state, time.perf_counter() - start, force=stopping)
        if stopping:
            raise Interrupted(stop.signum, f"after epoch {epoch}")

    # --- the summary: the selected epoch's weights, configured dropout rates, the test set once on them, provenance
    seconds, chosen = time.perf_counter() - start, select_final(state)
    dropout.restore()
    summary, test_correct = summarize(cfg, data, state.model, chosen, seconds, threads, threads_note, precision)
    return RunResult(state.history, summary, state.model, test_correct=test_correct)


def _stop_asked(stop: StopRequest | None) -> bool:
    """Whether a signal has asked the run to stop (at its next safe point)."""
    return stop is not None and stop.signum is not None


def training_set(cfg: TrainConfig, data: FashionMNIST) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels the run trains on: all training images, or ``cfg.train_size`` of
    them drawn with the run's seed (a generator of their own). The training images: the training
    split's, or under ``split`` d2l the training split's then the validation split's (together, all
    the data's training images: the official 60,000 for Fashion-MNIST)."""
    x, y = data.train_x, data.train_y
    if cfg.split == "d2l":
        x, y = torch.cat([x, data.val_x]), torch.cat([y, data.val_y])
    if not cfg.train_size:
        return x, y
    pick = torch.randperm(len(x), generator=generator(cfg.seed, SUBSET_STREAM))[: cfg.train_size]
    return x[pick], y[pick]


def validation_set(cfg: TrainConfig, data: FashionMNIST) -> tuple[torch.Tensor, torch.Tensor]:
    """What the validation metrics are measured on: the validation split, or under ``split`` d2l
    (which trains on it) the test set, as d2l's code does."""
    return (data.test_x, data.test_y) if cfg.split == "d2l" else (data.val_x, data.val_y)


def train_step(state: TrainState, x: torch.Tensor, y: torch.Tensor, precision: str = "fp32",
               written: WrittenOut | None = None) -> float:  # fmt: skip
    """One optimizer step on the minibatch ``x``, ``y`` (shifted first, with ``augment``; its
    weights' rows bounded after, with ``max_norm``), the forward pass in ``precision`` and the
    loss in fp32. Returns the minibatch's loss. ``written``: the model's step written out
    (:mod:`droplab.train.step`), used where it applies; autograd otherwise.

    Raises:
        Diverged: the loss or a gradient is not finite (the step is not taken).
    """
    cfg = state.config
    if cfg.augment:
        x = shift_images(x, cfg.augment, state.augment)
    if written is not None and written.applies(x):  # forward and backward written out: autograd's numbers
        loss = written.loss(x, y)
    else:
        written = None
        with autocast(precision):
            logits = state.model(x)
        loss = F.cross_entropy(logits.float(), y)  # .float(): no copy in fp32
    value = loss.item()
    if not math.isfinite(value):
        raise Diverged(state.epoch, state.step + 1, f"loss = {value}", cfg.lr)
    if written is not None:
        written.backward()  # into the gradients' buffers of the last step
    else:
        for group in state.optimizer.param_groups:  # zero_grad(set_to_none=True), without its ~30 us of bookkeeping
            for param in group["params"]:
                param.grad = None
        loss.backward()
    if (bad := _nonfinite_gradient(state.model)) is not None:
        raise Diverged(state.epoch, state.step + 1, bad, cfg.lr)
    _optimizer_step(state.optimizer, state.scheduler)
    if state.scheduler is not None:
        state.scheduler.step()
    if cfg.max_norm > 0:
        for linear in [m for m in state.model.modules() if isinstance(m, nn.Linear)]:
            max_norm_(linear, cfg.max_norm)
    state.step += 1
    return value


def _optimizer_step(optimizer: torch.optim.Optimizer, scheduler) -> None:
    """``optimizer.step()``. Plain SGD (no momentum, weight decay or schedule) as one update of
    all parameters, ``p -= lr * grad``: the numbers ``SGD.step`` computes, without its ~0.1 ms
    of Python a step."""
    groups = optimizer.param_groups
    if scheduler is not None or type(optimizer) is not torch.optim.SGD or not all(map(_plain_sgd, groups)):
        optimizer.step()
        return
    with torch.no_grad():
        for group in groups:
            params = [p for p in group["params"] if p.grad is not None]
            torch._foreach_add_(params, [p.grad for p in params], alpha=-group["lr"])


def _plain_sgd(group: dict) -> bool:
    return not (group["momentum"] or group["weight_decay"] or group["nesterov"] or group["maximize"])


def _nonfinite_gradient(model: nn.Module) -> str | None:
    """The name of the first parameter whose gradient holds a NaN or an infinity, else None."""
    named = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
    if not named:
        return None
    if cpu_kernel.all_finite([g for _, g in named]):  # the common case, fast; then which one
        return None
    worst = torch.stack([g.detach().abs().amax() for _, g in named])  # NaN and inf survive amax
    if bool(torch.isfinite(worst).all()):
        return None
    bad = next(i for i in range(len(named)) if not torch.isfinite(worst[i]))
    return f"gradient of {named[bad][0]} is {worst[bad].item()}"


def shift_images(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image of ``x`` (N, 784) by its own random (dy, dx) in [-k, k]^2, filling with
    zeros (the background): the usual translation augmentation."""
    n, (rows, cols) = len(x), IMAGE_SHAPE
    padded = F.pad(x.view(n, rows, cols), (k, k, k, k))
    dy, dx = torch.randint(-k, k + 1, (2, n), generator=generator)
    at_rows = (torch.arange(rows)[None, :] + k - dy[:, None])[:, :, None]
    at_cols = (torch.arange(cols)[None, :] + k - dx[:, None])[:, None, :]
    return padded[torch.arange(n)[:, None, None], at_rows, at_cols].reshape(n, rows * cols)


class Checkpointer:
    """Writes a run's checkpoints to ``path`` (None: nowhere); those not forced at most every
    ``interval`` seconds."""

    def __init__(self, path: str | Path | None, interval: float) -> None:
        self.path, self.interval, self.last = path, interval, -math.inf

    def save(self, state: TrainState, seconds: float, force: bool = True) -> None:
        """Save ``state`` as it stands after ``seconds`` of training."""
        if self.path is None or (not force and time.perf_counter() - self.last < self.interval):
            return
        self.last = time.perf_counter()
        state.seconds = seconds
        state.save(self.path)
