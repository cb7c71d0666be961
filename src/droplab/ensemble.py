r"""The test-time network against an explicit average of thinned networks, and calibration.

The lecture: at test time, inverted dropout's full network approximates the average of the
exponentially many thinned subnetworks seen in training (the paper's "weight scaling
inference rule", section 7.5, Figure 11). Monte-Carlo dropout averages the predictions of
``k`` sampled thinned networks instead:

.. math::
    p_k(y \mid x) = \frac{1}{k} \sum_{j=1}^{k} \mathrm{softmax}(f(x; m_j)), \qquad
    m_j \text{ a dropout mask}.

Dropout as a Bayesian Approximation
    Y. Gal, Z. Ghahramani, ICML 2016 (MC dropout as an uncertainty estimate).
On Calibration of Modern Neural Networks
    C. Guo, G. Pleiss, Y. Sun, K. Weinberger, ICML 2017 (expected calibration error).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models import noise_active

__all__ = [
    "predict_scaled",
    "predict_mc",
    "accuracy_nll",
    "expected_calibration_error",
    "reliability",
    "accuracy_vs_confidence",
    "agreement",
    "kl_divergence",
    "MC_KS",
]

MC_KS = (1, 2, 5, 10, 20, 50, 100)


@torch.no_grad()
def predict_scaled(model: nn.Module, x: Tensor, batch_size: int = 8192) -> Tensor:
    """Class probabilities of the test-time network (eval mode: weight scaling)."""
    was = model.training
    model.eval()
    try:
        return torch.cat([F.softmax(model(x[i : i + batch_size]), dim=1) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was)


@torch.no_grad()
def predict_mc(
    model: nn.Module, x: Tensor, ks: Sequence[int] = MC_KS, seed: int = 0, batch_size: int = 8192
) -> dict[int, Tensor]:
    """Monte-Carlo dropout: the mean of ``k`` thinned networks' probabilities, for each k in
    ``ks`` (the first k passes of one sequence of ``max(ks)``). Masks come from a generator
    seeded with ``seed``, forked so the caller's random state is untouched."""
    if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {list(ks)!r}")
    out: dict[int, Tensor] = {}
    classes = _num_classes(model, x[:1])
    with torch.random.fork_rng(devices=[]), noise_active(model):
        torch.manual_seed(seed)
        total = torch.zeros(len(x), classes)
        for j in range(1, max(ks) + 1):
            for i in range(0, len(x), batch_size):
                total[i : i + batch_size] += F.softmax(model(x[i : i + batch_size]), dim=1)
            if j in ks:
                out[j] = total / j
    return out


def _num_classes(model: nn.Module, x1: Tensor) -> int:
    was = model.training
    model.eval()
    try:
        return model(x1).shape[1]
    finally:
        model.train(was)


def accuracy_nll(probs: Tensor, y: Tensor) -> tuple[float, float]:
    """Accuracy and mean negative log-likelihood of probabilities ``probs`` for labels ``y``."""
    acc = (probs.argmax(dim=1) == y).double().mean().item()
    nll = -torch.log(probs.gather(1, y[:, None]).clamp_min(1e-12)).double().mean().item()
    return acc, nll


def agreement(p: Tensor, q: Tensor) -> Tensor:
    """Per example, whether class probabilities ``p`` and ``q`` predict the same class (their argmax).

    Examples::

        >>> agreement(torch.tensor([[0.7, 0.3], [0.4, 0.6]]), torch.tensor([[0.6, 0.4], [0.8, 0.2]])).tolist()
        [True, False]
    """
    return p.argmax(dim=1) == q.argmax(dim=1)


def kl_divergence(p: Tensor, q: Tensor) -> Tensor:
    r"""Per example, :math:`\mathrm{KL}(p \,\|\, q) = \sum_c p_c \log(p_c / q_c)` in nats, in float64
    (a class with :math:`p_c = 0` adds 0; :math:`q_c` is clamped at 1e-12).

    Examples::

        >>> kl = kl_divergence(torch.tensor([[0.5, 0.5], [1.0, 0.0]]), torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
        >>> [round(v, 6) for v in kl.tolist()]  # 0, and 1 * log(1 / 0.5) = log 2
        [0.0, 0.693147]
    """
    p64, q64 = p.double(), q.double().clamp_min(1e-12)
    terms = torch.where(p64 > 0, p64 * (p64.clamp_min(1e-300).log() - q64.log()), torch.zeros_like(p64))
    return terms.sum(dim=1)


def reliability(probs: Tensor, y: Tensor, bins: int = 15) -> list[dict]:
    """Per confidence bin (equal widths on [0, 1]): count, mean confidence, accuracy."""
    conf, pred = probs.max(dim=1)
    correct = (pred == y).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    rows = []
    for b in range(bins):
        lo, hi = edges[b].item(), edges[b + 1].item()
        inside = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        n = int(inside.sum())
        rows.append({
            "low": lo, "high": hi, "count": n,
            "confidence": conf[inside].double().mean().item() if n else math.nan,
            "accuracy": correct[inside].mean().item() if n else math.nan,
        })  # fmt: skip
    return rows


def expected_calibration_error(probs: Tensor, y: Tensor, bins: int = 15) -> float:
    r"""ECE: :math:`\sum_b \frac{n_b}{n} |\mathrm{acc}_b - \mathrm{conf}_b|` over equal-width bins."""
    n = len(y)
    return sum(r["count"] / n * abs(r["accuracy"] - r["confidence"]) for r in reliability(probs, y, bins) if r["count"])


def accuracy_vs_confidence(probs: Tensor, y: Tensor, thresholds: Sequence[float] = (0.0, 0.5, 0.7, 0.9, 0.99)):
    """For each threshold t: the fraction of examples with confidence >= t, and their accuracy."""
    conf, pred = probs.max(dim=1)
    correct = pred == y
    rows = []
    for t in thresholds:
        keep = conf >= t
        n = int(keep.sum())
        accuracy = correct[keep].double().mean().item() if n else math.nan
        rows.append({"threshold": t, "coverage": n / len(y), "accuracy": accuracy})
    return rows
