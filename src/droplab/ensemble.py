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

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models import noise_active
from .nn import DropPath, _NoiseLayer

__all__ = [
    "predict_scaled",
    "predict_mc",
    "mc_predict",
    "dropout_active",
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


# The modules whose training flag switches dropout, and nothing else, on: torch's and droplab's
# dropout layers, droplab's noise layers, nn.MultiheadAttention (its flag gates only its dropout),
# and torch's Transformer layers, whose flag in eval also selects a fused path without any dropout.
_GATED = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.TransformerEncoder,
          nn.TransformerDecoder, nn.Transformer)  # fmt: skip


def _is_dropout(m: nn.Module) -> bool:
    return isinstance(m, (nn.modules.dropout._DropoutNd, _NoiseLayer, DropPath, *_GATED))


@contextlib.contextmanager
def dropout_active(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for ``model``, but its dropout layers draw masks (:func:`_is_dropout`):
    normalization keeps its running statistics. Every module's own mode is restored on leaving.
    Dropout called as a function in a ``forward`` (``F.dropout(x, p, self.training)``) stays off:
    :func:`droplab.swap_dropout`'s report names such sites."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    for m in model.modules():
        if _is_dropout(m):
            m.train()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.train(mode)


@torch.no_grad()
def mc_predict(model: nn.Module, x: Tensor, samples: int = 30, seed: int = 0, batch_size: int = 8192) -> Tensor:
    r"""Monte-Carlo dropout for any model: the mean, over ``samples`` passes with the dropout
    layers on (and everything else in eval mode: :func:`dropout_active`), of the softmax of its
    outputs over the last dimension. Replayable: the passes draw from torch's generator seeded
    with ``seed``, forked, so the caller's random state is untouched and the same call gives the
    same probabilities. :func:`expected_calibration_error` and :func:`reliability` take the result.

    Examples::

        >>> import torch
        >>> from droplab import mc_predict
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))
        >>> x = torch.randn(5, 4)
        >>> p = mc_predict(model, x, samples=20, seed=1)
        >>> p.shape, torch.allclose(p.sum(1), torch.ones(5)), torch.equal(p, mc_predict(model, x, 20, seed=1))
        (torch.Size([5, 3]), True, True)
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples = {samples!r} is invalid: expected an integer >= 1")
    total, first, varied = None, None, False
    with torch.random.fork_rng(devices=[]), dropout_active(model):
        torch.manual_seed(seed)
        for _ in range(samples):
            probs = torch.cat([F.softmax(model(x[i : i + batch_size]), dim=-1) for i in range(0, len(x), batch_size)])
            total, first = (probs, probs) if total is None else (total + probs, first)
            varied = varied or not torch.equal(probs, first)
    if samples > 1 and not varied and any(_is_dropout(m) and getattr(m, "p", 0) > 0 for m in model.modules()):
        warnings.warn(f"mc_predict: all {samples} passes gave the same probabilities although the model has dropout "
                      "layers with p > 0: its forward does not use them in this mode (a fused path, or dropout called "
                      "as a function); the result is the deterministic prediction", stacklevel=2)  # fmt: skip
    return total / samples


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
