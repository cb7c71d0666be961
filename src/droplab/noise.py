r"""Other noise than dropout, and the weight constraints the paper pairs with it: each a
function and its module side by side, for the studies of d2l's exercises 6 and 7.

Dropout: A Simple Way to Prevent Neural Networks from Overfitting
    N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, JMLR 15 (2014):
    Gaussian multiplicative noise (section 10), max-norm regularization (section 5.1).
Regularization of Neural Networks using DropConnect
    L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, ICML 2013.
Self-Normalizing Neural Networks
    G. Klambauer, T. Unterthiner, A. Mayr, S. Hochreiter, NeurIPS 2017 (alpha dropout).

Every noise layer is the identity in ``eval()`` mode except :class:`NoRescaleDropout`, whose
point is the mismatch it leaves between training and test.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .functional import check_dropout_args, check_probability
from .functional import dropout as fast_dropout

__all__ = [
    "gaussian_dropout",
    "additive_noise",
    "stratified_dropout",
    "no_rescale_dropout",
    "GaussianDropout",
    "AdditiveNoise",
    "StratifiedDropout",
    "NoRescaleDropout",
    "AlphaDropout",
    "DropConnectLinear",
    "max_norm_",
    "NOISE_KINDS",
    "noise_layer",
]


def gaussian_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    r"""Multiplicative Gaussian noise with dropout's variance: :math:`h' = h \cdot r`,
    :math:`r \sim \mathcal{N}(1, p / (1 - p))`, so :math:`\mathbb{E}[h'] = h` and
    :math:`\mathrm{Var}[h'] = h^2 p/(1-p)`, as for inverted dropout with the same ``p``.
    ``p = 1`` has infinite variance and is refused."""
    check_dropout_args(x, p)
    if p == 1.0:
        raise ValueError("gaussian_dropout needs p < 1 (the variance p / (1 - p) is infinite at p = 1)")
    if not training or p == 0.0:
        return x
    return x * (1.0 + math.sqrt(p / (1.0 - p)) * torch.randn_like(x))


def additive_noise(x: Tensor, sigma: float, training: bool = True) -> Tensor:
    r"""Additive Gaussian noise: :math:`h' = h + \epsilon`, :math:`\epsilon \sim \mathcal{N}(0, \sigma^2)`."""
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not 0 <= sigma < math.inf:
        raise ValueError(f"noise standard deviation sigma must be a finite number >= 0, got {sigma!r}")
    if not training or sigma == 0:
        return x
    return x + sigma * torch.randn_like(x)


def stratified_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    r"""Dropout that zeroes exactly :math:`\mathrm{round}(p \cdot n)` of the ``n`` units of each
    row (the last dimension), chosen uniformly at random, and scales the rest by
    :math:`n / (n - k)`: every row keeps the same number of units, so the mask's only
    randomness is *which* units. droplab's own variant for the noise study: Bernoulli dropout
    with the binomial spread of the kept count removed.
    """
    check_dropout_args(x, p)
    if not training or p == 0.0:
        return x
    n = x.shape[-1]
    k = round(p * n)
    if k == 0:
        return x
    if k >= n:
        return x * 0.0
    ranks = torch.rand(x.shape, device=x.device).argsort(dim=-1).argsort(dim=-1)
    keep = (ranks >= k).to(x.dtype)
    return x * keep * (n / (n - k))


def no_rescale_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    r"""Dropout *without* the :math:`1/(1-p)` scale and without any test-time correction:
    :math:`h' = m \cdot h` while training (so :math:`\mathbb{E}[h'] = (1-p) h`), :math:`h' = h`
    at test time. The mismatch the lecture warns about, on purpose; the paper's original
    scheme instead multiplies the outgoing weights by :math:`1 - p` at test time
    (``test_scale=True`` in :class:`NoRescaleDropout`)."""
    check_dropout_args(x, p)
    if not training or p == 0.0:
        return x
    return fast_dropout(x, p) * (1.0 - p)


class GaussianDropout(nn.Module):
    """Module of :func:`gaussian_dropout`."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = check_probability(p)
        if self.p == 1.0:
            raise ValueError("GaussianDropout needs p < 1 (the variance p / (1 - p) is infinite at p = 1)")

    def forward(self, x: Tensor) -> Tensor:
        return gaussian_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class AdditiveNoise(nn.Module):
    """Module of :func:`additive_noise`."""

    def __init__(self, sigma: float = 0.5) -> None:
        super().__init__()
        additive_noise(torch.zeros(1), sigma, training=False)  # checks sigma
        self.sigma = float(sigma)

    def forward(self, x: Tensor) -> Tensor:
        return additive_noise(x, self.sigma, self.training)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class StratifiedDropout(nn.Module):
    """Module of :func:`stratified_dropout`."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = check_probability(p)

    def forward(self, x: Tensor) -> Tensor:
        return stratified_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class NoRescaleDropout(nn.Module):
    """Module of :func:`no_rescale_dropout`. With ``test_scale=True`` the eval-mode output is
    multiplied by ``1 - p`` (the paper's original test-time weight scaling), which removes
    the mismatch again."""

    def __init__(self, p: float = 0.5, test_scale: bool = False) -> None:
        super().__init__()
        self.p = check_probability(p)
        self.test_scale = bool(test_scale)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return no_rescale_dropout(x, self.p, True)
        return x * (1.0 - self.p) if self.test_scale else x

    def extra_repr(self) -> str:
        return f"p={self.p}, test_scale={self.test_scale}"


class AlphaDropout(nn.AlphaDropout):
    """``torch.nn.AlphaDropout`` (keeps mean and variance for SELU networks), with droplab's
    argument check."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(check_probability(p))


class DropConnectLinear(nn.Linear):
    r"""A linear layer that drops *weights* instead of activations (DropConnect).

    While training, each weight is zeroed with probability :math:`p` and the rest scaled by
    :math:`1/(1-p)` (one mask per minibatch, shared by its examples: the common, cheap form;
    Wan et al. draw one per example); in ``eval()`` mode the layer uses the weights as they
    are, the mean of the masked layer. Biases are not dropped.

    Args:
        in_features, out_features, bias: as :class:`torch.nn.Linear`.
        p: probability of dropping a weight, in [0, 1].
    """

    def __init__(self, in_features: int, out_features: int, p: float = 0.5, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.p = check_probability(p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return F.linear(x, self.weight, self.bias)
        return F.linear(x, fast_dropout(self.weight, self.p), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", p={self.p}"


@torch.no_grad()
def max_norm_(linear: nn.Linear, c: float) -> None:
    r"""Max-norm constraint, in place: rescale each unit's incoming weight vector (a row of
    ``linear.weight``) whose L2 norm exceeds ``c`` back to norm ``c`` (the paper's section 5.1,
    applied after every update)."""
    if not isinstance(c, (int, float)) or isinstance(c, bool) or not 0 < c < math.inf:
        raise ValueError(f"max-norm bound c must be a finite number > 0, got {c!r}")
    norms = linear.weight.norm(dim=1, keepdim=True)
    linear.weight.mul_(torch.clamp(c / norms.clamp_min(1e-12), max=1.0))


# The noise a general MLP can put after each hidden ReLU: name -> layer of strength p.
NOISE_KINDS = {
    "dropout": None,  # droplab.nn.Dropout (the models module builds it)
    "gaussian": GaussianDropout,
    "additive": lambda p: AdditiveNoise(math.sqrt(p / (1.0 - p))),  # dropout's std at unit scale
    "alpha": AlphaDropout,
    "stratified": StratifiedDropout,
    "no-rescale": NoRescaleDropout,
    "no-rescale-test-scaled": lambda p: NoRescaleDropout(p, test_scale=True),
    "dropconnect": None,  # drops weights of the next linear layer instead (models builds it)
}


def noise_layer(kind: str, p: float) -> nn.Module:
    """The noise module ``kind`` (a key of :data:`NOISE_KINDS` other than dropout/dropconnect)."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {', '.join(NOISE_KINDS)}; got {kind!r}")
    make = NOISE_KINDS[kind]
    if make is None:
        raise ValueError(f"noise {kind!r} is built by droplab.models, not as a separate layer")
    return make(p)
