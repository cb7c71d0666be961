"""A study's plan before it runs: how many runs, and about how long they take.

A study of V configurations over S seeds is V x S training runs. Before any is planned in
detail, :func:`check_size` refuses plans over a limit (a million seeds is a typo, not a
study). :func:`estimate_seconds` then puts a rough figure on the runs to train: the
arithmetic of each run (its matrix products: forward and backward over the training images,
forward over the evaluation images) at a rate taken from runs this store already holds, or,
in an empty store, from a matrix product timed on this machine, with the trainer's measured
overhead over its matrix products.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from ..data import NUM_CLASSES, NUM_INPUTS
from ..train.config import evaluation_count

__all__ = ["MAX_RUNS", "PlanError", "check_size", "run_flops", "estimate_seconds", "format_seconds"]

MAX_RUNS = 10_000  # more runs than this in one study call is refused unless the caller raises the limit
OVERHEAD = 1.5  # the trainer's time over its matrix products' (the headline study's runs: half the estimate at 3.0)
STEP_SECONDS = 2e-4  # fixed cost of one optimizer step (Python, autograd, the optimizer)
# The ViT's time over its matrix products', relative to the MLP's: its many small operations (LayerNorm, softmax,
# GELU, reshapes on 16 tokens). Measured: 3 epochs on 5,000 images (the transformer study's ViT and MLP), the
# ViT's time over this estimate was 3.6x the MLP's (the better of two pairs of runs, a 2-core AMD EPYC under load).
MODEL_OVERHEAD = {"vit": 3.6}


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


def image_macs(train: Mapping[str, Any]) -> int:
    """Multiply-adds of one image's forward pass through a run's matrix products: the MLP's weights, or
    the ViT's patch embedding, per block its q, k, v, projection and MLP (ratio 2) on every token and
    its two attention products, and the head.

    Examples::

        >>> image_macs({"hidden": (256, 256)})
        268800
        >>> image_macs({"model": "vit", "vit_patch": 7, "vit_width": 32, "vit_depth": 2})
        320320
    """
    if train.get("model") != "vit":
        dims = [NUM_INPUTS, *train["hidden"], NUM_CLASSES]
        return sum(a * b for a, b in zip(dims, dims[1:]))
    width, patch = train["vit_width"], train["vit_patch"]
    tokens = (28 // patch) ** 2
    block = tokens * 8 * width * width + 2 * tokens * tokens * width
    return tokens * patch * patch * width + train["vit_depth"] * block + width * NUM_CLASSES


def run_flops(train: Mapping[str, Any], n_train: int, n_val: int, n_test: int) -> tuple[float, int]:
    """Floating-point operations of one run's matrix products, and its optimizer steps."""
    params = image_macs(train)
    used = train.get("train_size") or n_train
    epochs, every, batch = train["epochs"], train.get("eval_every", 1), train["batch_size"]
    evals = evaluation_count(epochs, every)
    eval_images = min(train.get("eval_train_size") or used, used) + n_val
    flops = 6 * params * used * epochs + 2 * params * (eval_images * evals + n_test)
    steps = used // batch if train.get("drop_last") else math.ceil(used / batch)
    return float(flops), epochs * steps


def _matmul_rate() -> float:
    """This machine's float32 matrix-product rate (FLOP/s) on the lecture's layer, with torch's
    threads: the best of five 20 ms timings (on a shared machine, the others measure the load)."""
    a, b = torch.rand(256, NUM_INPUTS), torch.rand(NUM_INPUTS, 256)
    torch.mm(a, b)
    best = 0.0
    for _ in range(5):
        reps, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < 0.02:
            torch.mm(a, b)
            reps += 1
        best = max(best, 2 * 256 * NUM_INPUTS * 256 * reps / elapsed)
    return best


def estimate_seconds(
    todo: Iterable[Mapping[str, Any]], stored: Iterable[Mapping[str, Any]], n_train: int, n_val: int, n_test: int
) -> tuple[float, str]:
    """About how long training ``todo`` (jobs) takes, and what the figure rests on.

    ``stored``: finished records in the store; where there are some that trained to the end (not
    diverged), their seconds per unit of work calibrate the estimate, else a timed matrix product does.
    """

    def work(train: Mapping[str, Any], rate: float) -> float:
        flops, steps = run_flops(train, n_train, n_val, n_test)
        return OVERHEAD * MODEL_OVERHEAD.get(train.get("model"), 1.0) * flops / rate + STEP_SECONDS * steps

    rate = _matmul_rate()
    todo = list(todo)
    ratios = [r["summary"]["seconds"] / work(r["job"]["train"], rate) for r in stored
              if "summary" in r]  # a diverged run stopped early: its time says nothing of a whole run's
    if ratios:
        scale, basis = statistics.median(ratios), f"from the {len(ratios)} runs already in the store"
    else:
        scale, basis = 1.0, f"a rough figure from this machine's matrix-product rate ({rate / 1e9:.0f} GFLOP/s)"
    return scale * sum(work(job["train"], rate) for job in todo), basis


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
