"""What a run measures: per-epoch metrics, activation statistics, the test set once, and where it ran.

Per evaluated epoch (a metrics row): the mean training loss with dropout active (over the
minibatches, as d2l plots it), then accuracy and loss on the training set in eval mode, and
on the validation split; with ``track_activations``, the variance of each hidden layer's
activations; with ``eval_before_last_step``, the validation metrics just before the epoch's
final step too. The summary holds the selected epoch's metrics (``select``: the last, or the
one best on validation), the test set's, evaluated once at the end on the selected weights
(and per image, whether each was classified right), and the run's provenance: seed, threads,
data, versions and machine.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from ..data import FashionMNIST
from ..models import noise_active
from .config import TrainConfig
from .precision import autocast

__all__ = [
    "METRICS", "HISTORY_KEYS", "BEFORE_LAST_KEYS", "PROBE_SIZE", "evaluate", "evaluate_each", "activation_variances",
    "metrics_row", "before_last_step", "summarize",
]  # fmt: skip

METRICS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]  # the columns of metrics.csv
HISTORY_KEYS = (*METRICS, "train_loss_eval")  # what every metrics row holds
BEFORE_LAST_KEYS = ("val_loss_before_last", "val_acc_before_last")  # with eval_before_last_step
PROBE_SIZE = 2000  # validation images the activation variances are measured on


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 8192,
             precision: str = "fp32") -> tuple[float, float]:  # fmt: skip
    """Mean cross-entropy and accuracy of ``model`` in eval mode (its mode is restored), its
    forward passes in ``precision`` (:mod:`droplab.train.precision`), the loss in fp32."""
    loss, acc, _ = evaluate_each(model, x, y, batch_size, precision)
    return loss, acc


@torch.inference_mode()
def evaluate_each(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 8192,
                  precision: str = "fp32") -> tuple[float, float, np.ndarray]:  # fmt: skip
    """:func:`evaluate`, and whether ``model`` classified each image right, from the same pass.

    Returns:
        the mean cross-entropy, the accuracy, and a bool array with one entry per image (in the
        order of ``x``) whose mean is the accuracy exactly.
    """
    was_training = model.training
    model.eval()
    loss_sum, correct, right = 0.0, 0, []
    for i in range(0, len(x), batch_size):
        with autocast(precision):
            logits = model(x[i : i + batch_size]).float()
        target = y[i : i + batch_size]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        right.append(logits.argmax(dim=1) == target)
        correct += right[-1].sum().item()
    model.train(was_training)
    return loss_sum / len(x), correct / len(x), torch.cat(right).numpy()


def hidden_readers(model: nn.Module) -> list[nn.Linear]:
    """The linear layer that reads each hidden layer's activations, in order: the model's own
    ``hidden_readers()`` where it has one (:class:`droplab.vit.ViT`: each block's MLP output layer),
    else every linear layer after the first (an MLP's, whatever computes its activations)."""
    if callable(readers := getattr(model, "hidden_readers", None)):
        return list(readers())
    return [m for m in model.modules() if isinstance(m, nn.Linear)][1:]


@torch.no_grad()
def activation_variances(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Variance of each hidden layer's activations on ``x``: per unit over the examples (and a
    ViT's tokens), then averaged over the units. ``act_var_<i>``: hidden layer i's activations in
    eval mode, its ReLU, SELU or GELU module's outputs (where the model has no such module, what the
    next layer reads); ``act_var_train_<i>``: what the next layer (:func:`hidden_readers`) reads in
    training mode, after dropout or other noise. Training-mode noise is drawn on a forked
    generator, so measuring does not change the run; batch-norm layers stay in eval mode for it.

    Raises:
        ValueError: the model has no hidden layer to measure.
    """
    readers = hidden_readers(model)
    if not readers:
        raise ValueError(f"{type(model).__name__} has no hidden layer whose activations could be tracked")
    activations = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.SELU, nn.GELU))]
    seen: dict[str, torch.Tensor] = {}
    hooks = [r.register_forward_pre_hook(lambda m, i, k=k: seen.__setitem__(f"in{k}", i[0])) for k, r in
             enumerate(readers)]  # fmt: skip
    if len(activations) == len(readers):
        hooks += [a.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(f"out{k}", o)) for k, a in
                  enumerate(activations)]  # fmt: skip

    def variances(prefix: str, kind: str) -> dict[str, float]:
        values = [seen.get(f"{kind}{k}", seen[f"in{k}"]) for k in range(len(readers))]
        return {f"{prefix}{k + 1}": v.flatten(0, -2).var(dim=0).mean().item() for k, v in enumerate(values)}

    was_training = model.training
    try:
        model.eval()
        model(x)
        out = variances("act_var_", "out")
        with torch.random.fork_rng(devices=[]), noise_active(model):
            model(x)
        return out | variances("act_var_train_", "in")
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)


def metrics_row(
    epoch: int, train_loss: float, model: nn.Module, cfg: TrainConfig, train: tuple, val: tuple,
    precision: str = "fp32",
) -> dict[str, float]:
    """The metrics of an evaluated epoch.

    Args:
        train_loss: the epoch's mean training loss (dropout active).
        train: the training images and labels the train-set metrics are measured on.
        val: the images and labels the validation metrics are measured on (the validation split,
            or under ``split`` d2l the test set).
        precision: the precision the run uses (``cfg.precision``, or fp32 where it fell back).
    """
    train_loss_eval, train_acc = evaluate(model, *train, cfg.eval_batch_size, precision)
    val_loss, val_acc = evaluate(model, *val, cfg.eval_batch_size, precision)
    row = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
               train_loss_eval=train_loss_eval)  # fmt: skip
    if cfg.track_activations:
        row.update(activation_variances(model, val[0][:PROBE_SIZE]))
    return row


def before_last_step(model: nn.Module, cfg: TrainConfig, val: tuple, precision: str = "fp32") -> dict[str, float]:
    """The validation metrics just before an epoch's final optimizer step (``eval_before_last_step``):
    :func:`evaluate`'s, in eval mode, drawing nothing from any generator."""
    loss, acc = evaluate(model, *val, cfg.eval_batch_size, precision)
    return dict(zip(BEFORE_LAST_KEYS, (loss, acc)))


def summarize(cfg: TrainConfig, data: FashionMNIST, model: nn.Module, chosen: dict, seconds: float, threads: int,
              threads_note: str | None, precision: tuple[str, str | None] = ("fp32", None),
              ) -> tuple[dict, np.ndarray]:  # fmt: skip
    """A finished run's summary: the selected epoch's metrics, the test set's (evaluated here,
    once, on ``model``: the selected epoch's weights), and the run's provenance.

    Args:
        chosen: the selected epoch's metrics row (``cfg.select``). seconds: the training time.
        threads: the thread count used; ``threads_note``: what changed it from the one asked for.
        precision: the precision used, and what changed it from ``cfg.precision`` (recorded
            in the summary when the run asked for another than fp32).

    Returns:
        the summary, and whether ``model`` classified each test image right (its mean: ``test_acc``).
    """
    test_loss, test_acc, test_correct = evaluate_each(model, data.test_x, data.test_y, cfg.eval_batch_size,
                                                      precision[0])  # fmt: skip
    asked = {} if cfg.precision == "fp32" else {"precision": precision[0], "precision_note": precision[1]}
    return asked | {
        **{k: chosen[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc")},
        "test_loss": test_loss,
        "test_acc": test_acc,
        "train_loss_eval": chosen["train_loss_eval"],
        "gap": chosen["val_loss"] - chosen["train_loss_eval"],
        "best_epoch": chosen["epoch"],
        "seconds": seconds,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "threads": threads,
        "threads_note": threads_note,
        "data": data.source,
        "data_sha256": data.digest,
        "versions": versions(),
        "machine": f"{platform.machine()} {platform.system()}, {cpu_name()}",
    }, test_correct


def versions() -> dict[str, str]:
    """The versions of what computed a run: droplab, torch, numpy, Python."""
    return {"droplab": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}  # fmt: skip


def cpu_name() -> str:
    """The processor's model name (from ``/proc/cpuinfo`` on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
