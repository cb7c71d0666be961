r"""Regularizers that act on a layer's weights instead of its activations: DropConnect, which
drops weights, and the max-norm constraint the dropout paper pairs with dropout.

Regularization of Neural Networks using DropConnect
    L. Wan, M. Zeiler, S. Zhang, Y. LeCun, R. Fergus, ICML 2013.
Dropout: A Simple Way to Prevent Neural Networks from Overfitting
    N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, JMLR 15 (2014):
    max-norm regularization (section 5.1).

Both are also importable from :mod:`droplab.noise`, beside the noise on activations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .functional import check_probability
from .functional import dropout as fast_dropout

__all__ = ["DropConnectLinear", "max_norm_"]


class DropConnectLinear(nn.Linear):
    r"""A linear layer that drops *weights* instead of activations (DropConnect).

    While training, each weight is zeroed with probability :math:`p` and the rest scaled by
    :math:`1/(1-p)`, one mask :math:`M` per call, shared by the examples of the minibatch (the
    common, cheap form; Wan et al. draw one per example):

    .. math::
        y = x \left(\frac{M \odot W}{1-p}\right)^{\!\top} + b, \qquad
        M_{ij} \sim \mathrm{Bernoulli}(1-p), \qquad \mathbb{E}[y] = x W^\top + b.

    In ``eval()`` mode the layer uses the weights as they are, the mean of the masked layer.
    Biases are not dropped. The mask comes from :func:`droplab.functional.dropout`.

    Args:
        in_features, out_features, bias: as :class:`torch.nn.Linear`.
        p: probability of dropping a weight, in [0, 1]. Default: 0.5.

    Shape:
        - Input: :math:`(*, H_{in})` with :math:`H_{in}` = ``in_features``.
        - Output: :math:`(*, H_{out})` with :math:`H_{out}` = ``out_features``.

    Examples::

        >>> import torch
        >>> from droplab.weights import DropConnectLinear
        >>> m = DropConnectLinear(4, 3, p=0.5)
        >>> m
        DropConnectLinear(in_features=4, out_features=3, bias=True, p=0.5)
        >>> x = torch.randn(5, 4)
        >>> m(x).shape
        torch.Size([5, 3])
        >>> torch.equal(m.eval()(x), torch.nn.functional.linear(x, m.weight, m.bias))
        True
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
    applied after every update).

    Examples::

        >>> import torch
        >>> from droplab.weights import max_norm_
        >>> lin = torch.nn.Linear(2, 2)
        >>> _ = lin.weight.data.copy_(torch.tensor([[3.0, 4.0], [0.3, 0.4]]))  # norms 5 and 0.5
        >>> max_norm_(lin, 1.0)
        >>> lin.weight.norm(dim=1)
        tensor([1.0000, 0.5000], grad_fn=<LinalgVectorNormBackward0>)
    """
    if not isinstance(c, (int, float)) or isinstance(c, bool) or not 0 < c < math.inf:
        raise ValueError(f"max-norm bound c must be a finite number > 0, got {c!r}")
    norms = linear.weight.norm(dim=1, keepdim=True)
    linear.weight.mul_(torch.clamp(c / norms.clamp_min(1e-12), max=1.0))
