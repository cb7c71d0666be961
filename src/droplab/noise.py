r"""Other noise than dropout, on activations: each layer beside its function, for the studies
of d2l's exercises 6 and 7, and :data:`NOISE_KINDS`, the noise a general MLP can use.

Dropout: A Simple Way to Prevent Neural Networks from Overfitting
    N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, JMLR 15 (2014):
    Gaussian multiplicative noise (section 10).
Self-Normalizing Neural Networks
    G. Klambauer, T. Unterthiner, A. Mayr, S. Hochreiter, NeurIPS 2017 (alpha dropout).

The layers of strength ``p`` share droplab's base (``droplab.nn._NoiseLayer``): one check of
``p``, one repr. Each class carries the math and an example; its function refers to it. Every
noise layer is the identity in ``eval()`` mode except :class:`NoRescaleDropout`, whose point is
the mismatch it leaves between training and test. DropConnect and max-norm, which act on
weights, are in :mod:`droplab.weights` (and importable from here).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .functional import check_dropout_args, check_probability
from .functional import dropout as fast_dropout
from .nn import _NoiseLayer
from .weights import DropConnectLinear, max_norm_  # the weights' side; importable from here too

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


def _check_gaussian_p(p: float) -> float:
    p = check_probability(p)
    if p == 1.0:
        raise ValueError(
            f"gaussian dropout probability has to be in [0, 1), but got {p} (the variance p / (1 - p) is infinite)"
        )
    return p


def gaussian_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Multiply each element of ``x`` by its own draw of :math:`\\mathcal{N}(1, p/(1-p))`.

    See :class:`GaussianDropout` for the math and shapes.

    Args:
        x: a floating tensor.
        p: the dropout probability whose variance the noise has, in [0, 1).
        training: apply the noise if ``True``; otherwise return ``x`` itself.
    """
    check_dropout_args(x, p)
    _check_gaussian_p(p)
    if not training or p == 0.0:
        return x
    return x * (1.0 + math.sqrt(p / (1.0 - p)) * torch.randn_like(x))


class GaussianDropout(_NoiseLayer):
    r"""Multiplicative Gaussian noise with dropout's mean and variance (Srivastava et al., section 10).

    While training, each element is multiplied by its own normal draw:

    .. math::
        h' = h \cdot r, \qquad r \sim \mathcal{N}\!\left(1, \tfrac{p}{1-p}\right),

    so :math:`\mathbb{E}[h'] = h` and :math:`\mathrm{Var}[h'] = h^2\,p/(1-p)`: the mean and
    variance of inverted dropout with the same ``p``, without its zeros. In ``eval()`` mode it
    is the identity.

    Args:
        p: the dropout probability whose variance the noise has, in [0, 1) (at ``p = 1`` the
            variance is infinite). Default: 0.5.

    Shape:
        - Input: :math:`(*)`, a floating dtype. Output: :math:`(*)`, the same shape.

    Examples::

        >>> import torch
        >>> from droplab.noise import GaussianDropout
        >>> m = GaussianDropout(p=0.5)
        >>> m
        GaussianDropout(p=0.5)
        >>> _ = torch.manual_seed(0)
        >>> y = m(torch.ones(1_000_000))
        >>> f"mean {y.mean():.2f}, variance {y.var():.2f}"  # 1 and p / (1 - p) = 1
        'mean 1.00, variance 1.00'
    """

    check_p = staticmethod(_check_gaussian_p)

    def forward(self, x: Tensor) -> Tensor:
        return gaussian_dropout(x, self.p, self.training)


def _check_sigma(sigma: float) -> float:
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not 0 <= sigma < math.inf:
        raise ValueError(f"noise standard deviation sigma must be a finite number >= 0, got {sigma!r}")
    return float(sigma)


def additive_noise(x: Tensor, sigma: float, training: bool = True) -> Tensor:
    """Add :math:`\\mathcal{N}(0, \\sigma^2)` noise to each element of ``x``.

    See :class:`AdditiveNoise` for the math and shapes.

    Args:
        x: a floating tensor.
        sigma: the noise's standard deviation, a finite number >= 0.
        training: apply the noise if ``True``; otherwise return ``x`` itself.
    """
    _check_sigma(sigma)
    if not training or sigma == 0:
        return x
    return x + sigma * torch.randn_like(x)


class AdditiveNoise(nn.Module):
    r"""Additive Gaussian noise, independent of the activation's size.

    While training, each element gets its own normal draw added:

    .. math::
        h' = h + \epsilon, \qquad \epsilon \sim \mathcal{N}(0, \sigma^2),

    so :math:`\mathbb{E}[h'] = h` and :math:`\mathrm{Var}[h'] = \sigma^2`, whatever the size of
    :math:`h`. In ``eval()`` mode it is the identity. Its strength is a standard deviation, not
    a probability, so it is the one noise layer outside droplab's base of strength ``p``
    (``NOISE_KINDS["additive"]`` gives it dropout's standard deviation at unit scale,
    :math:`\sigma = \sqrt{p/(1-p)}`).

    Args:
        sigma: the noise's standard deviation, a finite number >= 0. Default: 0.5.

    Shape:
        - Input: :math:`(*)`, a floating dtype. Output: :math:`(*)`, the same shape.

    Examples::

        >>> import torch
        >>> from droplab.noise import AdditiveNoise
        >>> _ = torch.manual_seed(0)
        >>> noisy = AdditiveNoise(sigma=0.5)(torch.full((1_000_000,), 3.0))
        >>> f"mean {noisy.mean():.2f}, std {noisy.std():.2f}"  # the input's 3, and sigma
        'mean 3.00, std 0.50'
        >>> AdditiveNoise(sigma=0.5).eval()
        AdditiveNoise(sigma=0.5)
    """

    def __init__(self, sigma: float = 0.5) -> None:
        super().__init__()
        self.sigma = _check_sigma(sigma)

    def forward(self, x: Tensor) -> Tensor:
        return additive_noise(x, self.sigma, self.training)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma!r}"


def stratified_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero exactly ``round(p * n)`` of the ``n`` elements of each row of ``x``; rescale the rest.

    See :class:`StratifiedDropout` for the math and shapes.

    Args:
        x: a floating tensor; rows are along the last dimension.
        p: the fraction of each row to drop, in [0, 1].
        training: apply dropout if ``True``; otherwise return ``x`` itself.
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


class StratifiedDropout(_NoiseLayer):
    r"""Dropout that keeps the same number of units in every row: droplab's own variant.

    While training, in each row of :math:`n` units (the last dimension) a set :math:`K` of
    :math:`k = \mathrm{round}(p\,n)` units, chosen uniformly at random, is zeroed and the rest
    are scaled by :math:`n/(n-k)`:

    .. math::
        h'_i = \begin{cases} 0 & i \in K, \\ \dfrac{n}{n-k}\,h_i & \text{otherwise,} \end{cases}
        \qquad |K| = k.

    Each unit is dropped with probability :math:`k/n \approx p` and :math:`\mathbb{E}[h'] = h`,
    as in inverted dropout, but the binomial spread of the kept count is gone: the mask's only
    randomness is *which* units. With :math:`k = n` the output is zeros. In ``eval()`` mode it
    is the identity.

    Args:
        p: the fraction of each row to drop, in [0, 1]. Default: 0.5.

    Shape:
        - Input: :math:`(*, n)`, a floating dtype. Output: :math:`(*, n)`, the same shape.

    Examples::

        >>> import torch
        >>> from droplab.noise import StratifiedDropout
        >>> m = StratifiedDropout(p=0.25)
        >>> _ = torch.manual_seed(0)
        >>> m(torch.ones(2, 8))  # two of eight dropped in each row; the rest times 8 / 6
        tensor([[1.3333, 1.3333, 0.0000, 0.0000, 1.3333, 1.3333, 1.3333, 1.3333],
                [1.3333, 1.3333, 1.3333, 1.3333, 0.0000, 0.0000, 1.3333, 1.3333]])
    """

    def forward(self, x: Tensor) -> Tensor:
        return stratified_dropout(x, self.p, self.training)


def no_rescale_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero each element of ``x`` with probability ``p`` and leave the rest as they are.

    See :class:`NoRescaleDropout` for the math, the test-time behaviour and shapes.

    Args:
        x: a floating tensor.
        p: probability of an element to be zeroed, in [0, 1].
        training: apply dropout if ``True``; otherwise return ``x`` itself (no test-time scale).
    """
    check_dropout_args(x, p)
    if not training or p == 0.0:
        return x
    return fast_dropout(x, p) * (1.0 - p)


class NoRescaleDropout(_NoiseLayer):
    r"""Dropout *without* the :math:`1/(1-p)` scale: the train/test mismatch, on purpose.

    While training, each element is zeroed with probability :math:`p` and the others are kept
    as they are:

    .. math::
        h' = m\,h, \quad m \sim \mathrm{Bernoulli}(1-p), \qquad \mathbb{E}[h'] = (1-p)\,h.

    In ``eval()`` mode the output is :math:`h`: the next layer, trained on activations
    :math:`1-p` times as large on average, now sees them at full size. With
    ``test_scale=True`` the eval-mode output is :math:`(1-p)\,h` instead, the original paper's
    scaling at test time, which removes the mismatch again.

    Args:
        p: probability of an element to be zeroed, in [0, 1]. Default: 0.5.
        test_scale: multiply the eval-mode output by :math:`1-p`. Default: ``False``.

    Shape:
        - Input: :math:`(*)`, a floating dtype. Output: :math:`(*)`, the same shape.

    Examples::

        >>> import torch
        >>> from droplab.noise import NoRescaleDropout
        >>> _ = torch.manual_seed(0)
        >>> NoRescaleDropout(p=0.5)(torch.ones(2, 8))  # kept units are not scaled up
        tensor([[0., 0., 1., 1., 1., 1., 1., 0.],
                [1., 1., 1., 1., 1., 1., 0., 1.]])
        >>> x = torch.ones(3)
        >>> NoRescaleDropout(p=0.5).eval()(x)  # at test time: h, not (1 - p) h
        tensor([1., 1., 1.])
        >>> scaled = NoRescaleDropout(p=0.5, test_scale=True)
        >>> scaled
        NoRescaleDropout(p=0.5, test_scale=True)
        >>> scaled.eval()(x)
        tensor([0.5000, 0.5000, 0.5000])
    """

    _shown = ("p", "test_scale")

    def __init__(self, p: float = 0.5, test_scale: bool = False) -> None:
        super().__init__(p)
        self.test_scale = bool(test_scale)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return no_rescale_dropout(x, self.p, True)
        return x * (1.0 - self.p) if self.test_scale else x


class AlphaDropout(nn.AlphaDropout):
    r""":class:`torch.nn.AlphaDropout`, with droplab's check of ``p``: dropout for SELU networks.

    While training, each element is set, with probability :math:`p`, to SELU's negative
    saturation value :math:`\alpha' = -\lambda\alpha \approx -1.7581` instead of zero, and the
    result goes through the affine map that restores the mean and variance of the input
    (Klambauer et al., section 3):

    .. math::
        h' = a\,(m\,h + (1-m)\,\alpha') + b, \qquad m \sim \mathrm{Bernoulli}(1-p),
        \qquad a = \bigl((1-p)(1 + p\,\alpha'^2)\bigr)^{-1/2}, \quad b = -a\,p\,\alpha',

    so an input of mean 0 and variance 1 keeps them. In ``eval()`` mode it is the identity.

    Args:
        p: probability of an element to be replaced by :math:`\alpha'`, in [0, 1]. Default: 0.5.

    Shape:
        - Input: :math:`(*)`, a floating dtype. Output: :math:`(*)`, the same shape.

    Examples::

        >>> import torch
        >>> from droplab.noise import AlphaDropout
        >>> _ = torch.manual_seed(0)
        >>> y = AlphaDropout(p=0.2)(torch.randn(1_000_000))
        >>> f"mean {y.mean():+.2f}, std {y.std():.2f}"  # those of the input: 0 and 1
        'mean -0.00, std 1.00'
        >>> AlphaDropout(p=0.2)
        AlphaDropout(p=0.2, inplace=False)
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(check_probability(p))


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
    """The noise module ``kind`` (a key of :data:`NOISE_KINDS` other than dropout/dropconnect).

    Examples::

        >>> from droplab.noise import noise_layer
        >>> noise_layer("no-rescale-test-scaled", 0.3)
        NoRescaleDropout(p=0.3, test_scale=True)
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {', '.join(NOISE_KINDS)}; got {kind!r}")
    make = NOISE_KINDS[kind]
    if make is None:
        raise ValueError(f"noise {kind!r} is built by droplab.models, not as a separate layer")
    return make(p)
