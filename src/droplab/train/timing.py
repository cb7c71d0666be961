"""How long a run's steps take on this machine: the trainer's own step, timed, for estimates.

A study's plan (:mod:`droplab.studies.plan`) puts a figure on its runs before any is trained.
Counting their arithmetic is not enough: a small Vision Transformer spends most of its time in
small operations (LayerNorm, softmax, GELU, reshapes on 16 tokens) that no count of matrix
products sees, and the same arithmetic runs at different speeds through the MLP's written-out
step and through autograd. :func:`time_step` therefore times what a run does: one optimizer
step of the model a configuration names, through :func:`~droplab.train.loop.train_step` (the
written-out step where it applies), and one evaluation pass, on random images.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from ..data import NUM_CLASSES, NUM_INPUTS
from ..threads import use_threads
from .config import TrainConfig
from .loop import Diverged, train_step
from .metrics import evaluate
from .precision import resolve
from .state import TrainState
from .step import written_out

__all__ = ["time_step"]


def _best(call: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timings of ``call``, after one untimed call (on a shared machine
    the slower ones measure the load)."""
    call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def time_step(cfg: TrainConfig, repeats: int = 3) -> tuple[float, float]:
    """Seconds of one optimizer step of ``cfg``'s run on this machine, and of evaluating one image.

    The step is the trainer's own (:func:`~droplab.train.loop.train_step`, written out where the
    model allows, with ``cfg``'s optimizer, precision and augmentation) on a batch of
    ``cfg.batch_size`` random images; the evaluation is the forward pass in eval mode on the same
    batch, per image. Each is the best of ``repeats`` timings after a warm-up, at ``cfg``'s thread
    count. Nothing the caller trains changes: the global generators and torch's thread count are
    restored.

    Examples::

        >>> step, image = time_step(TrainConfig(hidden=(16,), dropout=(0.5,), batch_size=8, threads=1))
        >>> 0 < image < step < 1
        True
    """
    previous = torch.get_num_threads()
    try:
        with torch.random.fork_rng(devices=[]):
            threads, _ = use_threads(cfg.threads)
            precision = resolve(cfg.precision)[0]
            # as many images as the timed steps take: a one-cycle schedule is built for that many steps at least
            state = TrainState.start(cfg, cfg.batch_size * (repeats + 1), threads, "")
            written = written_out(state.model, precision)
            g = torch.Generator().manual_seed(0)
            x = torch.rand(cfg.batch_size, NUM_INPUTS, generator=g)
            y = torch.randint(0, NUM_CLASSES, (cfg.batch_size,), generator=g)

            def step() -> None:
                try:
                    train_step(state, x, y, precision, written)
                except Diverged:  # random images at a large rate: the step's time is still its time
                    pass

            state.model.train()
            seconds = _best(step, repeats)
            image = _best(lambda: evaluate(state.model, x, y, cfg.eval_batch_size, precision), repeats)
            return seconds, image / cfg.batch_size
    finally:
        torch.set_num_threads(previous)
