r"""Dropout as functions.

Dropout: A Simple Way to Prevent Neural Networks from Overfitting
    N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, JMLR 15 (2014).

``dropout_reference`` is the lecture's inverted dropout, written to be read: draw a
Bernoulli keep-mask from uniform samples, multiply, rescale by :math:`1/(1-p)`.
``dropout`` is the public entry point used by the layers and models; it has the same
semantics as the reference and is where faster kernels go.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor

__all__ = ["check_probability", "check_dropout_args", "dropout_reference", "dropout"]


def check_probability(p: float) -> float:
    """Return ``p`` as a float if it is a real number in [0, 1]; raise otherwise."""
    if isinstance(p, bool) or not isinstance(p, Real):
        raise TypeError(f"dropout probability p must be a real number in [0, 1], got {p!r}")
    if math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return float(p)


def check_dropout_args(x: Tensor, p: float) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``x`` is a floating tensor and ``p`` in [0, 1].

    The checks every dropout function in droplab shares, with the same messages.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"dropout expects a torch.Tensor as input, got {type(x).__name__}")
    if not (x.is_floating_point()):
        raise TypeError(
            f"dropout expects a floating-point tensor (float16, bfloat16, float32, float64), "
            f"got dtype {x.dtype}"
        )
    check_probability(p)


def dropout_reference(
    x: Tensor, p: float, training: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    r"""Inverted dropout, exactly as the lecture writes it.

    Each element is zeroed with probability :math:`p`; survivors are scaled by
    :math:`1/(1-p)`:

    .. math::
        h' = \begin{cases} 0 & \text{with probability } p, \\
                           \dfrac{h}{1-p} & \text{otherwise,} \end{cases}
        \qquad \mathbb{E}[h'] = h.

    The keep-mask is ``u > p`` for ``u`` uniform on [0, 1), drawn in float32 whatever
    the dtype of ``x``. The gradient, through autograd, is ``mask / (1 - p)``.

    Args:
        x: input tensor of any shape and floating dtype.
        p: probability of zeroing an element, in [0, 1]. ``p = 0`` returns ``x`` itself;
            ``p = 1`` returns zeros (no division by zero).
        training: apply dropout if ``True``; otherwise return ``x`` unchanged.
        generator: a ``torch.Generator`` for the uniform draws (default: torch's global one).

    Shape:
        - Input: :math:`(*)`. Output: :math:`(*)`, the same shape.

    Examples::

        >>> torch.manual_seed(0)
        >>> x = torch.arange(16, dtype=torch.float32).reshape(2, 8)
        >>> dropout_reference(x, 0.5).shape
        torch.Size([2, 8])
    """
    check_dropout_args(x, p)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        # All dropped; torch.where keeps x in the graph with a zero gradient.
        return torch.where(torch.zeros_like(x, dtype=torch.bool), x, 0.0)
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    mask = (u > p).to(x.dtype)
    return mask * x / (1.0 - p)


def dropout(
    x: Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Inverted dropout: the entry point the layers, models and training use.

    Same semantics as :func:`dropout_reference` (see there for the math); with
    ``inplace=True`` the result is written into ``x`` and ``x`` is returned.

    Args:
        x: input tensor of any shape and floating dtype.
        p: probability of zeroing an element, in [0, 1]. Default: 0.5.
        training: apply dropout if ``True``; otherwise return ``x`` unchanged.
        inplace: write the result into ``x``.
        generator: a ``torch.Generator`` for the random draws (default: torch's global one).

    Shape:
        - Input: :math:`(*)`. Output: :math:`(*)`, the same shape.

    Examples::

        >>> torch.manual_seed(0)
        >>> y = dropout(torch.ones(4, 4), p=0.25)
        >>> sorted(set(y.flatten().tolist())) in ([0.0, 4 / 3], [4 / 3])
        True
    """
    out = dropout_reference(x, p, training=training, generator=generator)
    if inplace and out is not x:
        return x.copy_(out)
    return out
