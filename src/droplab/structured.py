r"""Structured dropout: one keep decision shared along some dimensions, from the counter-based mask.

Efficient Object Localization Using Convolutional Networks
    J. Tompson, R. Goroshin, A. Jain, Y. LeCun, C. Bregler, CVPR 2015 (channel dropout, ``Dropout2d``).
Deep Networks with Stochastic Depth
    G. Huang, Y. Sun, Z. Liu, D. Sedra, K. Weinberger, ECCV 2016 (``drop_path``, as timm writes it).

``broadcast_dims`` has Flax's meaning: the mask has size 1 along the listed dimensions, so every
element along them is kept or dropped together. Its bits are those of :mod:`droplab.kernels.counter`
for the *reduced* tensor (the input's shape with the listed dimensions set to 1), indexed row-major
by the other coordinates; with no dimension listed it is the very mask :func:`droplab.functional.dropout`
uses. Kept elements are ``x / (1 - p)``, dropped ones ``x * 0``, as ``mask * x / (1 - p)`` computes
them. Nothing the size of the input is saved for backward: the reduced mask is regenerated from the
seed. The specification, with known-answer vectors: ``docs/mask-spec.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.overrides import handle_torch_function, has_torch_function_unary

from . import functional as F

__all__ = ["keep_mask", "structured_dropout", "dropout1d", "dropout2d", "dropout3d", "drop_path"]


def _reduced(shape: Sequence[int], broadcast_dims: Sequence[int]) -> tuple[int, ...]:
    """``shape`` with the dimensions of ``broadcast_dims`` set to 1; ValueError for a dimension it lacks."""
    shape, dims = tuple(shape), set()
    for d in broadcast_dims:
        if isinstance(d, bool) or not isinstance(d, int) or not -len(shape) <= d < len(shape):
            raise ValueError(f"broadcast_dims holds {d!r}: expected dimensions of a {len(shape)}-D input, "
                             f"from {-len(shape)} to {len(shape) - 1}")  # fmt: skip
        dims.add(d % len(shape))
    return tuple(1 if i in dims else n for i, n in enumerate(shape))


def keep_mask(seed: int, shape: Sequence[int], p: float, broadcast_dims: Sequence[int] = ()) -> Tensor:
    """The keep-mask (bool, of ``shape``) that dropout with ``seed`` and ``p`` uses, one value
    shared along ``broadcast_dims``: for debugging, and the published specification (``docs/mask-spec.md``).

    The seed of a call of :func:`droplab.functional.dropout` is :func:`droplab.functional.draw_seed`
    of its generator, in the state it had before the call.

    Examples::

        >>> import torch
        >>> from droplab.functional import dropout, draw_seed, keep_mask
        >>> keep_mask(7, (8,), 0.5)
        tensor([False,  True,  True, False, False,  True, False, False])
        >>> g = torch.Generator().manual_seed(3)
        >>> y = dropout(torch.ones(2, 4), 0.5, generator=g)
        >>> torch.equal(y != 0, keep_mask(draw_seed(torch.Generator().manual_seed(3)), (2, 4), 0.5))
        True
        >>> keep_mask(7, (2, 3), 0.5, broadcast_dims=(1,))  # one value per row
        tensor([[False, False, False],
                [ True,  True,  True]])
    """
    p = F.check_probability(p)
    reduced = _reduced(shape, broadcast_dims)
    if p in (0.0, 1.0):
        return torch.full(tuple(shape), p == 0.0, dtype=torch.bool)
    small = F._kernel(torch.ones(reduced, dtype=torch.float32), p, int(seed)) != 0
    return small.expand(tuple(shape))


def _scaled(reduced: tuple[int, ...], p: float, seed: int, like: Tensor) -> Tensor:
    """The reduced keep-mask as 0/1 in ``like``'s dtype and device (what ``mask * x / (1 - p)`` multiplies)."""
    ones = torch.ones(reduced, dtype=torch.float32, device=like.device)
    return (F._kernel(ones, p, seed) != 0).to(like.dtype)


class _StructuredDropout(torch.autograd.Function):
    """``mask * x / (1 - p)`` with the reduced mask of ``seed``; saves the seed and p, never a mask."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float, seed: int, reduced: tuple[int, ...], scale: bool) -> Tensor:
        ctx.p, ctx.seed, ctx.reduced, ctx.scale = p, seed, reduced, scale
        out = x * _scaled(reduced, p, seed, x)
        return out / (1.0 - p) if scale else out

    @staticmethod
    def jvp(ctx, tangent: Tensor, *_) -> Tensor:  # forward-mode AD: the same linear map
        out = tangent * _scaled(ctx.reduced, ctx.p, ctx.seed, tangent)
        return out / (1.0 - ctx.p) if ctx.scale else out

    @staticmethod
    def backward(ctx, grad: Tensor):
        if torch.is_grad_enabled():  # double backward: the same linear map, differentiable
            return _StructuredDropout.apply(grad, ctx.p, ctx.seed, ctx.reduced, ctx.scale), None, None, None, None
        out = grad * _scaled(ctx.reduced, ctx.p, ctx.seed, grad)
        return (out / (1.0 - ctx.p) if ctx.scale else out), None, None, None, None


def structured_dropout(x: Tensor, p: float, broadcast_dims: Sequence[int], training: bool = True,
                       inplace: bool = False, generator: torch.Generator | None = None,
                       scale: bool = True) -> Tensor:  # fmt: skip
    """Dropout of ``x`` with one keep decision shared along ``broadcast_dims`` (see the module's doc);
    ``scale=False`` keeps the survivors as they are (timm's ``scale_by_keep=False``)."""
    if has_torch_function_unary(x):  # a torch.fx.Proxy records the call
        return handle_torch_function(structured_dropout, (x,), x, p, broadcast_dims, training, inplace, generator,
                                     scale)  # fmt: skip
    if not isinstance(x, Tensor):
        raise TypeError(f"dropout expects a torch.Tensor as input, got {type(x).__name__}")
    p = F.check_probability(p)
    reduced = _reduced(x.shape, broadcast_dims)
    return F._dispatch(x, p, training, inplace, generator,
                       lambda x, p, seed: _graph_dropout(x, p, reduced, scale, seed),
                       lambda x, p, seed: _StructuredDropout.apply(x, p, seed, reduced, scale))


def _graph_dropout(x: Tensor, p: float, reduced: tuple[int, ...], scale: bool, seed: Tensor):
    """What :class:`_StructuredDropout` computes, in ops a graph holds (torch.compile, torch.export) or that
    meta and fake tensors run: the reduced mask from the custom op ``droplab::seeded_dropout`` for the 0-dim
    ``seed``. Autograd saves the reduced mask (one value per kept decision), not one per element."""
    ones = x.new_ones(reduced, dtype=torch.float32)
    out = x * (F.seeded_dropout_op(ones, p, seed) != 0).to(x.dtype)
    return out / (1.0 - p) if scale else out


def _feature_dims(x: Tensor, batched_ndim: int) -> tuple[int, ...]:
    """The dimensions a channel dropout shares its mask along, as torch's ``feature_dropout`` does:
    every one after the channel's (dim 1 of a batched input, dim 0 of an unbatched one)."""
    if x.dim() == batched_ndim - 1:  # no batch dimension: (C, *spatial)
        return tuple(range(1, x.dim()))
    return tuple(range(2, x.dim()))


def dropout1d(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Channel dropout on ``(N, C, L)`` or ``(C, L)``: every channel is kept or zeroed whole, as
    :func:`torch.nn.functional.dropout1d` (the same checks and messages), with droplab's mask."""
    if has_torch_function_unary(x):
        return handle_torch_function(dropout1d, (x,), x, p, training, inplace)
    F.check_probability(p)
    if x.dim() not in (2, 3):
        raise RuntimeError(f"dropout1d: Expected 2D or 3D input, but received a {x.dim()}D input. Note that "
                           "dropout1d exists to provide channel-wise dropout on inputs with 1 spatial dimension, a "
                           "channel dimension, and an optional batch dimension (i.e. 2D or 3D inputs).")  # fmt: skip
    return structured_dropout(x, p, _feature_dims(x, 3), training, inplace)


def dropout2d(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Channel dropout on ``(N, C, H, W)``, as :func:`torch.nn.functional.dropout2d`, warnings
    included: a 3-D input is read as ``(N, C, L)``, torch's legacy reading."""
    if has_torch_function_unary(x):
        return handle_torch_function(dropout2d, (x,), x, p, training, inplace)
    F.check_probability(p)
    if x.dim() not in (3, 4):
        warnings.warn(f"dropout2d: Received a {x.dim()}-D input to dropout2d, which is deprecated and will result "
                      "in an error in a future release. To retain the behavior and silence this warning, please use "
                      "dropout instead.", stacklevel=2)  # fmt: skip
    if x.dim() == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
                      "behavior is desired - input is interpreted as shape (N, C, L), where C is the channel dim.",
                      stacklevel=2)  # fmt: skip
    if x.dim() < 2:
        raise RuntimeError(f"dropout2d: Expected an input with a channel dimension, but received a {x.dim()}D input")
    return structured_dropout(x, p, tuple(range(2, x.dim())), training, inplace)


def dropout3d(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Channel dropout on ``(N, C, D, H, W)`` or ``(C, D, H, W)``, as :func:`torch.nn.functional.dropout3d`."""
    if has_torch_function_unary(x):
        return handle_torch_function(dropout3d, (x,), x, p, training, inplace)
    F.check_probability(p)
    if x.dim() not in (4, 5):
        warnings.warn(f"dropout3d: Received a {x.dim()}-D input to dropout3d, which is deprecated and will result "
                      "in an error in a future release. To retain the behavior and silence this warning, please use "
                      "dropout instead.", stacklevel=2)  # fmt: skip
    if x.dim() < 2:
        raise RuntimeError(f"dropout3d: Expected an input with a channel dimension, but received a {x.dim()}D input")
    return structured_dropout(x, p, _feature_dims(x, x.dim() + 1) if x.dim() != 5 else tuple(range(2, 5)),
                              training, inplace)  # fmt: skip


def drop_path(x: Tensor, p: float = 0.0, training: bool = False, generator: torch.Generator | None = None,
              scale_by_keep: bool = True) -> Tensor:  # fmt: skip
    r"""Stochastic depth: drop the whole sample (each index of dim 0) with probability ``p``,
    scale the survivors by :math:`1/(1-p)` (unless ``scale_by_keep`` is false), as timm's
    ``drop_path``; one draw per sample, from droplab's counter-based mask. Used on residual
    branches: ``x + drop_path(branch(x), p, self.training)``.

    Examples::

        >>> import torch
        >>> from droplab.functional import drop_path
        >>> _ = torch.manual_seed(0)
        >>> drop_path(torch.ones(4, 3), 0.5, training=True)  # rows kept (x 2) or dropped whole
        tensor([[0., 0., 0.],
                [0., 0., 0.],
                [2., 2., 2.],
                [2., 2., 2.]])
    """
    if has_torch_function_unary(x):
        return handle_torch_function(drop_path, (x,), x, p, training, generator=generator, scale_by_keep=scale_by_keep)
    if x.dim() < 1:
        raise ValueError("drop_path expects an input with a batch dimension (at least 1-D), got a 0-D tensor")
    return structured_dropout(x, p, tuple(range(1, x.dim())), training, generator=generator, scale=scale_by_keep)
