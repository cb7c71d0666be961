r"""Alpha dropout with droplab's counter-based mask: torch's ``alpha_dropout``, nothing saved for backward.

Self-Normalizing Neural Networks
    G. Klambauer, T. Unterthiner, A. Mayr, S. Hochreiter, NeurIPS 2017 (alpha dropout, section 3).

Alpha dropout keeps a SELU network's activations at mean 0 and variance 1: a dropped element is set
to SELU's negative saturation value :math:`-\alpha` (:math:`\alpha \approx 1.7581`) instead of 0,
and an affine map restores the moments:

.. math::
    h' = a\,\bigl(m\,h - (1 - m)\,\alpha\bigr) + a\,\alpha\,p, \qquad
    a = \bigl((1 - p)(1 + p\,\alpha^2)\bigr)^{-1/2}

PyTorch draws :math:`m` from Bernoulli(1 − p) and keeps it for backward (a float per element).
Here :math:`m` is the keep-mask of :func:`droplab.functional.keep_mask` for one seed drawn per call,
regenerated in backward, where the gradient is :math:`a\,m` times the incoming one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.overrides import handle_torch_function, has_torch_function_unary

from . import functional as F

__all__ = ["ALPHA", "alpha_dropout"]

ALPHA = 1.7580993408473766  # SELU's -lambda * alpha, torch's constant


def _keep(shape: torch.Size, p: float, seed: Tensor | int, like: Tensor) -> Tensor:
    """The keep-mask of ``seed`` as 0/1 in ``like``'s dtype and device (a custom-op call for a tensor seed)."""
    ones = torch.ones(shape, dtype=torch.float32, device=like.device)
    scaled = F.seeded_dropout_op(ones, p, seed) if isinstance(seed, Tensor) else F._kernel(ones, p, seed)
    return (scaled != 0).to(like.dtype)


def _affine(x: Tensor, keep: Tensor, p: float) -> Tensor:
    """``a (m x - (1 - m) alpha) + a alpha p`` as torch computes it: ``x * (m a) + ((m - 1) alpha a + alpha a p)``."""
    a = 1.0 / math.sqrt((ALPHA * ALPHA * p + 1) * (1 - p))
    return x * (keep * a) + ((keep - 1) * (ALPHA * a) + ALPHA * a * p)


class _AlphaDropout(torch.autograd.Function):
    """Eager autograd: saves the seed and p; backward multiplies by ``a m`` with the mask regenerated."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float, seed: int) -> Tensor:
        ctx.p, ctx.seed = p, seed
        return _affine(x.detach(), _keep(x.shape, p, seed, x), p)

    @staticmethod
    def _slope(ctx, like: Tensor) -> Tensor:  # m a, as torch's noise * a
        return _keep(like.shape, ctx.p, ctx.seed, like) * (1.0 / math.sqrt((ALPHA * ALPHA * ctx.p + 1) * (1 - ctx.p)))

    @staticmethod
    def jvp(ctx, tangent: Tensor, *_) -> Tensor:
        return tangent * _AlphaDropout._slope(ctx, tangent)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * _AlphaDropout._slope(ctx, grad), None, None  # linear in grad: differentiable again


def alpha_dropout(
    x: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Alpha dropout (Klambauer et al. 2017) of ``x``, with torch's signature, defaults and values
    for a given mask, and droplab's counter-based mask.

    See the module for the math. ``p = 0`` and ``training=False`` return ``x`` itself; ``p = 1``
    returns ``x * 0``, as torch does. :class:`droplab.nn.AlphaDropout` is the layer.

    Args:
        x: input of any shape and floating dtype.
        p: probability of an element being replaced by the saturation value, in [0, 1].
        training: apply alpha dropout if ``True`` (default ``False``, as torch's function).
        inplace: write the result into ``x``.
        generator: a ``torch.Generator`` to draw the seed from (default: torch's global one).

    Shape:
        - Input: :math:`(*)`. Output: :math:`(*)`, the same shape.

    Examples::

        >>> import torch
        >>> from droplab.functional import alpha_dropout, draw_seed, keep_mask
        >>> x = torch.randn(1_000_000, generator=torch.Generator().manual_seed(0))
        >>> y = alpha_dropout(x, 0.2, training=True, generator=torch.Generator().manual_seed(1))
        >>> f"mean {y.mean():+.2f}, std {y.std():.2f}"  # those of the input: 0 and 1
        'mean -0.00, std 1.00'
        >>> keep = keep_mask(draw_seed(torch.Generator().manual_seed(1)), x.shape, 0.2)
        >>> bool((y[~keep] == y[~keep][0]).all())  # every dropped element: one value, a (p - 1) alpha
        True
    """
    if has_torch_function_unary(x):  # a torch.fx.Proxy (symbolic_trace) records the call
        return handle_torch_function(alpha_dropout, (x,), x, p, training, inplace, generator=generator)
    if not isinstance(x, Tensor):
        raise TypeError(f"alpha_dropout expects a torch.Tensor as input, got {type(x).__name__}")
    p = F.check_probability(p)
    return F._dispatch(x, p, training, inplace, generator,
                       lambda x, p, seed: _affine(x, _keep(x.shape, p, seed, x), p),  # seed: a tensor, the custom op
                       _AlphaDropout.apply)
