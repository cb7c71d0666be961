"""What a run needs of the data and the machine (images enough for its batches, memory and disk), checked
against what they have before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import rundir
from ..data import NUM_CLASSES as NUM_OUTPUTS
from ..data import NUM_INPUTS, FashionMNIST
from ..memory import available_bytes, run_bytes
from .config import ConfigError, TrainConfig

__all__ = ["check_run", "check_batch_size", "training_pool_size", "check_memory", "check_disk", "checkpoint_bytes",
           "optimizer_buffers"]


def check_run(cfg: TrainConfig, data: FashionMNIST) -> None:
    """Refuse, before any work, a run of ``cfg`` on ``data`` that cannot be: a :class:`ConfigError`
    for a bad value, a batch larger than the images, or layers the memory available cannot hold."""
    cfg.validate()
    check_batch_size(cfg, data)
    check_memory(cfg, data)


def training_pool_size(cfg: TrainConfig, data: FashionMNIST) -> int:
    """The images a run's training set is drawn from: the training split's, or under ``split``
    d2l also the validation split's (together, all the data's training images)."""
    return len(data.train_x) + (len(data.val_x) if cfg.split == "d2l" else 0)


def check_batch_size(cfg: TrainConfig, data: FashionMNIST) -> None:
    """The checks that need the data: a training subset no larger than the training set, a
    batch no larger than what is trained on."""
    n_train = training_pool_size(cfg, data)
    if cfg.train_size > n_train:
        raise ConfigError("train_size", cfg.train_size, f"at most the {n_train} training images (0: all)")
    if cfg.batch_size > (cfg.train_size or n_train):
        raise ConfigError("batch_size", cfg.batch_size, f"at most the {cfg.train_size or n_train} training images")


def optimizer_buffers(cfg: TrainConfig) -> int:
    """Copies of the weights the optimizer keeps: Adam 2; SGD 1 with momentum (which the
    one-cycle schedule turns on), else 0."""
    return 2 if cfg.optimizer == "adam" else (1 if cfg.momentum or cfg.schedule == "onecycle" else 0)


def checkpoint_bytes(cfg: TrainConfig, n_train: int) -> int:
    """About how large a checkpoint of this run is: weights (and 4 floats per hidden unit for a
    norm layer's), optimizer buffers, the epoch's order of ``n_train`` images, and 64 KiB more.

    Examples::

        >>> round(checkpoint_bytes(TrainConfig(), 55_000) / 2**20, 2)  # the lecture's run, MiB
        1.52
    """
    dims = [NUM_INPUTS, *cfg.hidden, NUM_OUTPUTS]
    params = sum(a * b + b for a, b in zip(dims, dims[1:])) + 4 * sum(cfg.hidden)
    return 4 * params * (1 + optimizer_buffers(cfg)) + 8 * n_train + (1 << 16)


def check_memory(cfg: TrainConfig, data: FashionMNIST) -> None:
    """Refuse a run whose model and batches the memory available cannot hold (a
    :class:`ConfigError` for ``hidden``, with both figures), before any work."""
    pool = training_pool_size(cfg, data)
    n_train = cfg.train_size or pool
    eval_n = max(min(cfg.eval_train_size or n_train, n_train), len(data.val_x), len(data.test_x))
    copied = cfg.train_size or (pool if cfg.split == "d2l" else 0)  # a subset's copy, or d2l's joined splits
    need = run_bytes(cfg.hidden, optimizer_buffers(cfg), min(cfg.batch_size, n_train),
                     min(cfg.eval_batch_size, eval_n), new_images=copied)  # fmt: skip
    free = available_bytes()
    if free is not None and need > free:
        raise ConfigError("hidden", cfg.hidden, f"layers this machine's memory holds: this run needs about "
                          f"{need / 2**30:,.1f} GiB, {free / 2**30:,.1f} GiB are available")  # fmt: skip


def check_disk(directory: Path, cfg: TrainConfig, n_train: int) -> None:
    """Refuse, before any work, a run the disk of ``directory`` cannot hold: a checkpoint, its
    next version and the weights, on ``n_train`` images."""
    need = 3 * checkpoint_bytes(cfg, n_train) + (1 << 20)
    free = shutil.disk_usage(directory).free
    if free < need:
        raise rundir.NoSpace(directory, free, need)
