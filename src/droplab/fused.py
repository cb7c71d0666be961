r"""A hidden layer of droplab's MLPs as one autograd node: linear, then ReLU, then dropout.

:func:`linear_relu_dropout` computes

.. math::
    h' = \operatorname{dropout}_p\bigl(\operatorname{relu}(x W^\top + b)\bigr)

with the same numbers as ``droplab.functional.dropout(torch.relu(F.linear(x, W, b)), p)``
and in fewer passes over memory:

- forward: one matrix product with the bias (``addmm``), then the ReLU and the dropout in a
  single pass, in place, with the counter-based mask of :mod:`droplab.kernels.counter`;
- backward: the gradient at the pre-activation is :math:`g / (1-p)` where the output is
  positive and 0 elsewhere (the output is positive exactly where the ReLU passed and the
  element was kept), one pass that reads the saved output: no mask is stored or regenerated,
  and no pre-activation is kept. The three products of the gradients are the ones autograd
  computes for ``F.linear``, in the same order.

Saved for backward: the output, and the input and the weight where the other needs a
gradient (as ``addmm`` saves them). The next layer saves that output anyway, so the fused
layer keeps one activation tensor fewer than the composed one: the ReLU's output.

Where it cannot fuse (a device or dtype the CPU kernel does not take, autocast, torch.compile,
torch.func), it computes the composed expression, so every caller gets the same semantics.
The fused path equals the composed one bit for bit on finite values (float32 and float64;
``tests/test_fused.py``); they may differ in the sign of a zero gradient, and where a gradient
is not finite (an infinite gradient at a dropped element gives NaN composed, 0 fused).

Dropout: A Simple Way to Prevent Neural Networks from Overfitting
    N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, JMLR 15 (2014).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import functional

__all__ = ["linear_relu_dropout", "fusable"]

_FUSED_DTYPES = (torch.float32, torch.float64)
_cpu = None  # droplab.kernels.cpu, imported on first use


def _kernels():
    global _cpu
    if _cpu is None:
        from .kernels import cpu as _cpu
    return _cpu


class _LinearReLUDropout(torch.autograd.Function):
    """Eager autograd for the fused layer (old-style ``forward(ctx, ...)``: a few microseconds
    a call). Backward with ``create_graph`` is computed with differentiable torch operations."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, p: float, seed: int) -> Tensor:
        h = x.mm(weight.t()) if bias is None else torch.addmm(bias, x, weight.t())
        _kernels().relu_dropout_(h, seed, p, torch.get_num_threads())
        ctx.p, ctx.has_bias = p, bias is not None
        need_x, need_w = ctx.needs_input_grad[:2]  # as addmm: each product needs the other operand
        ctx.save_for_backward(x if need_w else None, weight if need_x else None, h)
        return h

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight, out = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: stay differentiable
            g = torch.where(out > 0, grad / (1.0 - ctx.p), 0.0)
        else:
            g = _kernels().relu_dropout_backward(grad, out, ctx.p, torch.get_num_threads())
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        # as autograd computes F.linear's gradients (addmm's backward), so the bits match
        grad_x = g.mm(weight) if need_x else None
        grad_w = g.t().mm(x) if need_w else None
        grad_b = g.sum(0) if need_b and ctx.has_bias else None
        return grad_x, grad_w, grad_b, None, None


def fusable(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`linear_relu_dropout` takes its fused path for these operands."""
    return (
        x.dim() == 2
        and x.is_cpu
        and x.dtype in _FUSED_DTYPES
        and weight.dtype == x.dtype
        and x.is_contiguous()
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and not torch._C._functorch.is_functorch_wrapped_tensor(x)
    )


def linear_relu_dropout(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    p: float,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""``dropout(relu(x W^T + b), p)``, fused on CPU in float32 and float64.

    One seed is drawn from ``generator`` (default: torch's global one), as
    :func:`droplab.functional.dropout` draws it, so a model built on this function trains
    bit for bit as the composed one.

    Args:
        x: input of shape :math:`(N, H_{in})`.
        weight, bias: the linear layer's :math:`(H_{out}, H_{in})` weight and :math:`(H_{out})`
            bias (or ``None``).
        p: probability of zeroing an element of the ReLU's output, in [0, 1].
        training: apply dropout if ``True``; otherwise ``relu(x W^T + b)``.
        generator: a ``torch.Generator`` to draw the seed from.

    Shape:
        - Input: :math:`(N, H_{in})`. Output: :math:`(N, H_{out})`.

    Examples::

        >>> import torch
        >>> import torch.nn.functional as F
        >>> from droplab.functional import dropout
        >>> from droplab.fused import linear_relu_dropout
        >>> x, w, b = torch.randn(4, 3), torch.randn(5, 3), torch.randn(5)
        >>> _ = torch.manual_seed(0)
        >>> fused = linear_relu_dropout(x, w, b, 0.5)
        >>> _ = torch.manual_seed(0)
        >>> torch.equal(fused, dropout(torch.relu(F.linear(x, w, b)), 0.5))
        True
    """
    functional.check_probability(p)
    if not training or p == 0.0 or p == 1.0 or not fusable(x, weight):
        h = torch.relu(F.linear(x, weight, bias))
        return functional.dropout(h, p, training=training, generator=generator)
    seed = functional.draw_seed(generator)
    return _LinearReLUDropout.apply(x, weight, bias, float(p), seed)
