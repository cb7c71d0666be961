"""Dropout layers: thin modules over :mod:`droplab.functional`.

Dropout: A Simple Way to Prevent Neural Networks from Overfitting
    N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, JMLR 15 (2014).
"""

from __future__ import annotations

from torch import Tensor, nn

from . import functional as F

__all__ = ["Dropout"]


class Dropout(nn.Module):
    r"""Inverted dropout; a drop-in for :class:`torch.nn.Dropout`.

    While training, zeroes each element with probability :math:`p` and scales the rest by
    :math:`1/(1-p)`, so :math:`\mathbb{E}[h'] = h`; in ``eval()`` mode it is the identity.

    Args:
        p: probability of an element to be zeroed, in [0, 1]. Default: 0.5.
        inplace: if ``True``, do the operation in place. Default: ``False``.
        impl: ``"fast"`` (:func:`droplab.functional.dropout`, the counter-based kernel) or
            ``"reference"`` (:func:`droplab.functional.dropout_reference`, the lecture's code).

    Shape:
        - Input: :math:`(*)`. Output: :math:`(*)`, the same shape.

    Examples::

        >>> import torch
        >>> m = Dropout(p=0.2)
        >>> m
        Dropout(p=0.2, inplace=False)
        >>> m(torch.randn(20, 16)).shape
        torch.Size([20, 16])
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, impl: str = "fast") -> None:
        super().__init__()
        self.p = F.check_probability(p)
        self.inplace = inplace
        self.impl = F.check_impl(impl)

    def forward(self, x: Tensor) -> Tensor:
        if self.impl == "reference":
            out = F.dropout_reference(x, self.p, training=self.training)
            return x.copy_(out) if self.inplace and out is not x else out
        return F.dropout(x, self.p, training=self.training, inplace=self.inplace)

    def extra_repr(self) -> str:
        extra = f", impl={self.impl!r}" if self.impl != "fast" else ""  # as torch's when fast
        return f"p={self.p}, inplace={self.inplace}{extra}"
