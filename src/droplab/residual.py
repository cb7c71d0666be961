r"""Dropout on a residual branch, fused: ``residual + dropout(x)`` and ``residual + dropout(x + bias)``.

A Transformer adds the output of every sublayer back to its input through dropout ("residual
dropout", Vaswani et al. 2017, section 5.4), most often just after the sublayer's bias:

.. math::
    y = r + \operatorname{dropout}_p(x + b)

Composed, that is three passes over memory (the bias add, the dropout, the residual add) and, with
PyTorch's dropout, a mask drawn element by element and stored for backward. Megatron-LM and
NVIDIA's TransformerEngine fuse the three; :func:`dropout_add` and :func:`bias_dropout_add` do it
with droplab's counter-based mask (:mod:`droplab.kernels.counter`, the mask of
:func:`droplab.functional.dropout` for the same seed): one pass that reads ``x``, ``r`` (and
``b``) and writes ``y``, and nothing saved for backward but the seed. Backward is one pass too:
the gradient of ``x`` is the incoming gradient through the same mask and scale, that of ``r`` the
incoming gradient itself, that of ``b`` the sum of ``x``'s over all dimensions but the last.

The values are those of the composed expression, bit for bit: ``x + b`` rounded, then divided by
``1 - p`` where kept or multiplied by 0 where dropped (NaN stays NaN), then ``+ r``. Where the
kernel cannot take its inputs (float16/bfloat16, a residual of another shape or dtype, a bias
that is not a vector along the last dimension, non-contiguous tensors, another device,
``torch.compile``, forward-mode AD) the composed expression itself is computed, with the same
seed drawn: every caller gets the same semantics, the fused pass where it applies.

Attention Is All You Need
    A. Vaswani, N. Shazeer, N. Parmar, J. Uszkoreit, L. Jones, A. Gomez, L. Kaiser, I. Polosukhin,
    NeurIPS 2017.
Dropout: A Simple Way to Prevent Neural Networks from Overfitting
    N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, JMLR 15 (2014).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.overrides import handle_torch_function, has_torch_function

from . import functional

__all__ = ["dropout_add", "bias_dropout_add"]

_FUSED_DTYPES = (torch.float32, torch.float64)
_cpu = None  # droplab.kernels.cpu, imported on first use


def _fused(x: Tensor, bias: Tensor | None, residual: Tensor, p: float, seed: int) -> Tensor:
    """The one-pass kernel on contiguous tensors of one dtype and device; no autograd."""
    global _cpu
    x, residual = x.detach(), residual.detach()
    bias = None if bias is None else bias.detach()
    if x.is_cuda:
        from .kernels import cuda

        return cuda.seeded_dropout_add(x, bias, residual, p, seed)
    if _cpu is None:
        from .kernels import cpu as _cpu
    out = _cpu.empty_like(x)
    _cpu.dropout_add_into(x, bias, residual, out, seed, p, torch.get_num_threads())
    return out


class _DropoutAdd(torch.autograd.Function):
    """Eager autograd for the fused kernel: saves the seed and p, never a mask or an activation."""

    @staticmethod
    def forward(ctx, x: Tensor, bias: Tensor | None, residual: Tensor, p: float, seed: int) -> Tensor:
        ctx.p, ctx.seed = p, seed
        return _fused(x, bias, residual, p, seed)

    @staticmethod
    def backward(ctx, grad: Tensor):
        need_x, need_bias, need_residual = ctx.needs_input_grad[:3]
        grad_x = grad_bias = None
        if need_x or need_bias:  # the same mask and scale on the gradient, differentiable again
            grad_x = functional.seeded_dropout(grad, ctx.p, ctx.seed)
        if need_bias:  # the sum over every dimension but the last (none for a 1-D x)
            grad_bias = grad_x.reshape(-1, grad_x.shape[-1]).sum(0)
        return grad_x if need_x else None, grad_bias, grad if need_residual else None, None, None


def _fusable(x: Tensor, bias: Tensor | None, residual: Tensor) -> bool:
    """Whether the kernel computes ``residual + dropout(x + bias)`` for these inputs, in eager mode."""
    if torch.compiler.is_compiling() or functional._without_data(x):
        return False
    tensors = (x, residual) if bias is None else (x, residual, bias)
    if not (x.dtype in _FUSED_DTYPES and residual.dtype == x.dtype and residual.shape == x.shape
            and x.device == residual.device and (x.is_cpu or x.is_cuda) and x.dim() > 0 and x.numel() > 0
            and all(t.is_contiguous() and not t.is_neg() for t in tensors)):  # the kernel reads raw memory
        return False
    if bias is not None and not (bias.dim() == 1 and bias.numel() == x.shape[-1] and bias.dtype == x.dtype
                                 and bias.device == x.device):
        return False
    if any(map(functional._has_tangent, tensors)):
        return False
    return not any(map(torch._C._functorch.is_functorch_wrapped_tensor, tensors))


def _check_tensors(**tensors: Tensor | None) -> None:
    for name, t in tensors.items():
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def _composed(x: Tensor, bias: Tensor | None, residual: Tensor, p: float, training: bool,
              generator: torch.Generator | None) -> Tensor:
    """``residual + dropout(x + bias)`` as written, shapes broadcast as torch does; a clear error where they do not."""
    shapes = {"x": x.shape, "residual": residual.shape} | ({} if bias is None else {"bias": bias.shape})
    try:
        torch.broadcast_shapes(*shapes.values())
    except RuntimeError:
        named = ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items())
        raise ValueError(f"the shapes of {named} do not broadcast together; expected residual of x's shape "
                         "(and a bias of the size of x's last dimension)") from None
    t = x if bias is None else x + bias
    return residual + functional.dropout(t, p, training, generator=generator)


def _dropout_add(x: Tensor, bias: Tensor | None, residual: Tensor, p: float, training: bool,
                 generator: torch.Generator | None) -> Tensor:
    p = functional.check_probability(p)
    if not (training and 0.0 < p < 1.0 and _fusable(x, bias, residual)):
        return _composed(x, bias, residual, p, training, generator)
    functional._refuse_jit_trace()
    seed = functional.draw_seed(generator)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, bias, residual)):
        return _DropoutAdd.apply(x, bias, residual, p, seed)
    return _fused(x, bias, residual, p, seed)


def dropout_add(
    x: Tensor, residual: Tensor, p: float = 0.5, training: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    r"""``residual + dropout(x, p)`` in one pass, with droplab's mask and nothing saved for backward.

    .. math::
        y_i = r_i + \frac{m_i x_i}{1 - p}, \qquad m_i = \text{keep bit of } (\text{seed}, i, p)

    The mask is the one :func:`droplab.functional.dropout` draws for the same generator state, so
    ``dropout_add(x, r, p)`` equals ``r + droplab.functional.dropout(x, p)`` bit for bit.

    Args:
        x: the branch to drop (any shape; float32 and float64 fuse, other floating dtypes are
            computed as the composed expression).
        residual: what the branch is added to, of ``x``'s shape (other shapes that broadcast are
            computed as the composed expression).
        p: probability of zeroing an element of ``x``, in [0, 1]. Default: 0.5.
        training: apply dropout if ``True``; otherwise return ``residual + x``.
        generator: a ``torch.Generator`` to draw the seed from (default: torch's global one).

    Shape:
        - x, residual: :math:`(*)`; output: the same shape.

    Examples::

        >>> import torch
        >>> from droplab.functional import dropout, dropout_add
        >>> x, r = torch.ones(2, 4), torch.full((2, 4), 10.0)
        >>> _ = torch.manual_seed(0)
        >>> dropout_add(x, r, 0.5)  # dropped: r; kept: r + x / (1 - p)
        tensor([[10., 10., 12., 12.],
                [12., 12., 12., 10.]])
        >>> _ = torch.manual_seed(0)
        >>> y = dropout_add(x, r, 0.5)
        >>> _ = torch.manual_seed(0)
        >>> torch.equal(y, r + dropout(x, 0.5))  # the same mask for the same generator state
        True
        >>> dropout_add(x, r, 0.5, training=False)
        tensor([[11., 11., 11., 11.],
                [11., 11., 11., 11.]])
    """
    if has_torch_function((x, residual)):  # a torch.fx.Proxy (symbolic_trace) records the call
        return handle_torch_function(dropout_add, (x, residual), x, residual, p, training, generator=generator)
    _check_tensors(x=x, residual=residual)
    return _dropout_add(x, None, residual, p, training, generator)


def bias_dropout_add(
    x: Tensor, bias: Tensor, residual: Tensor, p: float = 0.5, training: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""``residual + dropout(x + bias, p)`` in one pass: a sublayer's bias, its residual dropout and
    the skip connection (Megatron-LM's and TransformerEngine's ``bias_dropout_add``).

    .. math::
        y_{\ldots j} = r_{\ldots j} + \frac{m_{\ldots j} (x_{\ldots j} + b_j)}{1 - p}

    Equal bit for bit to ``residual + droplab.functional.dropout(x + bias, p)`` for the same
    generator state. Its backward gives ``bias`` the sum of ``x``'s gradient over every dimension
    but the last.

    Args:
        x: the branch before its bias, :math:`(*, H)`.
        bias: a vector of :math:`H` values added along the last dimension (other shapes that
            broadcast are computed as the composed expression).
        residual: what the branch is added to, of ``x``'s shape.
        p: probability of zeroing an element of ``x + bias``, in [0, 1]. Default: 0.5.
        training: apply dropout if ``True``; otherwise return ``residual + (x + bias)``.
        generator: a ``torch.Generator`` to draw the seed from (default: torch's global one).

    Shape:
        - x, residual: :math:`(*, H)`; bias: :math:`(H)`; output: :math:`(*, H)`.

    Examples::

        >>> import torch
        >>> from droplab.functional import bias_dropout_add, dropout
        >>> x, b, r = torch.zeros(2, 3), torch.tensor([1.0, 2.0, 3.0]), torch.ones(2, 3)
        >>> _ = torch.manual_seed(3)
        >>> y = bias_dropout_add(x, b, r, 0.5)
        >>> _ = torch.manual_seed(3)
        >>> torch.equal(y, r + dropout(x + b, 0.5))
        True
        >>> bias_dropout_add(x, b, r, 0.5, training=False)
        tensor([[2., 3., 4.],
                [2., 3., 4.]])
    """
    if has_torch_function((x, bias, residual)):
        return handle_torch_function(bias_dropout_add, (x, bias, residual), x, bias, residual, p, training,
                                     generator=generator)
    _check_tensors(x=x, bias=bias, residual=residual)
    return _dropout_add(x, bias, residual, p, training, generator)
