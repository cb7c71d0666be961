r"""Scaled dot-product attention whose dropout mask is regenerated in backward, never stored.

Attention Is All You Need
    A. Vaswani, N. Shazeer, N. Parmar, J. Uszkoreit, L. Jones, A. Gomez, L. Kaiser, I. Polosukhin,
    NeurIPS 2017 (scaled dot-product attention, with dropout on the attention weights).
Dropout: A Simple Way to Prevent Neural Networks from Overfitting
    N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, JMLR 15 (2014).

The attention probabilities :math:`P` are the largest activation of a transformer layer
(``L x S`` per head), and with ``dropout_p > 0`` torch's CPU path (its "math" path) keeps three
tensors of that size for backward: :math:`P` (for the softmax), the dropout mask and the dropped
:math:`P` (for the product with :math:`V`). :func:`scaled_dot_product_attention` keeps ``q``,
``k``, ``v``, one log-sum-exp per row and the seed of its counter-based mask: backward
recomputes :math:`P` from ``q``, ``k`` and the log-sum-exp, and the mask from the seed
(:mod:`droplab.kernels.counter`). ``benchmarks/attention_memory.py`` measures the bytes and the
time against torch's (``docs/kernel.md``, "Attention dropout").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.overrides import handle_torch_function, has_torch_function

from . import functional as F

__all__ = ["scaled_dot_product_attention"]

# What the autograd node keeps: the per-row log-sum-exp (backward recomputes P: one more
# matmul) or P itself (L x S per head). benchmarks/attention_memory.py measures both.
KEEP_PROBS = False


def _check(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, is_causal: bool, enable_gqa: bool) -> int:
    """Raise for arguments torch's ``scaled_dot_product_attention`` refuses; return the GQA group size."""
    for name, t in (("query", q), ("key", k), ("value", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"scaled_dot_product_attention expects tensors, got {name} of type {type(t).__name__}")
    if not (q.dtype == k.dtype == v.dtype) or not q.is_floating_point():
        raise TypeError(f"query, key and value must have one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if min(q.dim(), k.dim(), v.dim()) < 2:
        raise ValueError(f"query, key and value must be at least 2-D, (..., L, E), (..., S, E) and (..., S, Ev); "
                         f"got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")  # fmt: skip
    if k.shape[-1] != q.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"shapes (..., L, E), (..., S, E), (..., S, Ev) expected for query, key, value; "
                         f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")  # fmt: skip
    if attn_mask is not None:
        if is_causal:
            raise ValueError("attn_mask and is_causal=True were both given: pass one of them")
        if not isinstance(attn_mask, Tensor) or attn_mask.dtype not in (torch.bool, torch.float32, q.dtype):
            got = attn_mask.dtype if isinstance(attn_mask, Tensor) else type(attn_mask).__name__
            raise TypeError(f"attn_mask must be a bool tensor, a float32 one or one of the query's dtype "
                            f"({q.dtype}), as torch's; got {got}")
    groups = 1
    if enable_gqa:
        heads = [t.shape[-3] if t.dim() >= 3 else None for t in (q, k, v)]
        if None in heads or heads[1] != heads[2] or heads[0] % heads[1]:
            raise ValueError(f"enable_gqa=True needs (..., H, L, E) inputs with key and value heads dividing the "
                             f"query heads; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")  # fmt: skip
        groups = heads[0] // heads[1]
    heads = (lambda t: (*t.shape[:-3], t.shape[-3] * groups)) if groups > 1 else (lambda t: t.shape[:-2])
    try:
        torch.broadcast_shapes(q.shape[:-2], heads(k), heads(v))
    except RuntimeError:
        raise ValueError(f"the batch dimensions of query, key and value do not broadcast: "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}") from None  # fmt: skip
    return groups


def _expand(t: Tensor, groups: int) -> Tensor:
    """Key or value heads repeated for grouped-query attention (each ``groups`` query heads share one)."""
    return t.repeat_interleave(groups, dim=-3) if groups > 1 else t


def _wide(t: Tensor) -> Tensor:
    """``t`` in the dtype the arithmetic runs in: float32 for float16 and bfloat16, as torch's CPU math path."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _scores(q: Tensor, k: Tensor, mask: Tensor | None, causal: bool, scale: float) -> Tensor:
    """``q k^T * scale`` with the mask applied: a bool mask's False and the causal mask's upper
    triangle set to ``-inf``, a float mask added."""
    s = torch.matmul(q, k.transpose(-2, -1)).mul_(scale)
    if causal:
        mask = torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).tril_()
    if mask is None:
        return s
    if mask.dtype == torch.bool:
        return s.masked_fill_(~mask, -math.inf)  # in place: a mask larger than the scores is refused, as torch
    return s.add_(mask)


def _row_logsumexp(s: Tensor) -> Tensor:
    """Log-sum-exp of each row, 0 for a fully masked row: ``exp(s - lse)`` is then 0 there, as torch gives."""
    lse = torch.logsumexp(s, dim=-1, keepdim=True)
    return lse.masked_fill_(lse == -math.inf, 0.0)


def _drop(x: Tensor, p: float, seed: int) -> Tensor:
    """Dropout of ``x`` with the counter-based mask of ``seed`` (``p = 1``: all dropped). Linear in ``x``."""
    return x * 0.0 if p == 1.0 else F._kernel(x, p, seed)


def _fit(grad: Tensor, like: Tensor, groups: int = 1) -> Tensor:
    """A gradient computed on the expanded, broadcast operand, summed back to ``like``'s shape and dtype."""
    if groups > 1:
        grad = grad.unflatten(-3, (-1, groups)).sum(-3)
    return grad.sum_to_size(like.shape).to(like.dtype)


class _Attention(torch.autograd.Function):
    """``dropout(softmax(q k^T * scale + mask)) @ v``; saves q, k, v, the row log-sum-exp (or P) and the seed."""

    @staticmethod
    def forward(ctx, q, k, v, mask, p, seed, scale, causal, groups, keep_probs):
        kk, vv = _expand(_wide(k), groups), _expand(_wide(v), groups)
        s = _scores(_wide(q), kk, mask, causal, scale)
        lse = _row_logsumexp(s)
        probs = s.sub_(lse).exp_()
        out = torch.matmul(_drop(probs, p, seed), vv).to(q.dtype)
        ctx.p, ctx.seed, ctx.scale, ctx.causal, ctx.groups = p, seed, scale, causal, groups
        ctx.mask_shape, ctx.mask_dtype = (mask.shape, mask.dtype) if mask is not None else (None, None)
        if keep_probs:
            ctx.save_for_backward(q, k, v, probs, None)
        else:
            ctx.save_for_backward(q, k, v, lse, mask)
        ctx.keep_probs = keep_probs
        return out

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():  # create_graph=True: the saved row statistics carry no graph
            raise RuntimeError(
                "droplab.functional.scaled_dot_product_attention has first derivatives only, and a second was "
                "asked (create_graph=True); use torch.nn.functional.scaled_dot_product_attention there")
        q, k, v, saved, mask = ctx.saved_tensors
        p, seed, groups = ctx.p, ctx.seed, ctx.groups
        qq, kk, vv = _wide(q), _expand(_wide(k), groups), _expand(_wide(v), groups)
        probs = saved if ctx.keep_probs else _scores(qq, kk, mask, ctx.causal, ctx.scale).sub_(saved).exp_()
        g = _wide(grad)
        dv = None
        if ctx.needs_input_grad[2]:
            dv = _fit(torch.matmul(_drop(probs, p, seed).transpose(-2, -1), g), v, groups)
        # dP = the same dropout of dO V^T (dropout is linear); dS = P * (dP - rowsum(dP * P))
        dp = _drop(torch.matmul(g, vv.transpose(-2, -1)), p, seed)
        rowsum = torch.matmul(dp.unsqueeze(-2), probs.unsqueeze(-1)).squeeze(-1)  # no L x S temporary
        ds = dp.sub_(rowsum).mul_(probs)
        dq = _fit(torch.matmul(ds, kk).mul_(ctx.scale), q) if ctx.needs_input_grad[0] else None
        dk = None
        if ctx.needs_input_grad[1]:
            dk = _fit(torch.matmul(ds.transpose(-2, -1), qq).mul_(ctx.scale), k, groups)
        dmask = ds.sum_to_size(ctx.mask_shape).to(ctx.mask_dtype) if ctx.needs_input_grad[3] else None
        return dq, dk, dv, dmask, None, None, None, None, None, None


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Scaled dot-product attention (Vaswani et al., 2017) with droplab's dropout on the
    attention probabilities: a drop-in for :func:`torch.nn.functional.scaled_dot_product_attention`
    that keeps no mask and no dropped copy of the probabilities for backward.

    .. math::
        P = \mathrm{softmax}\left(\frac{Q K^T}{\sqrt{E}} + M\right), \qquad
        \mathrm{out} = \mathrm{dropout}_p(P)\, V

    with :math:`1/\sqrt{E}` replaced by ``scale`` when given; :math:`M` is ``attn_mask`` (a bool
    mask: ``True`` takes part, ``False`` is :math:`-\infty`; a float mask is added) or, with
    ``is_causal``, :math:`-\infty` above the diagonal (top-left aligned, as torch). A fully masked
    row gives zeros, as torch's. Kept probabilities are divided by :math:`1 - p`, dropped ones are 0,
    whenever ``dropout_p`` > 0 (no ``training`` flag, as torch); at 0 this is torch's own function.

    The mask is the counter-based one of :func:`droplab.functional.dropout`: one seed drawn per
    call from ``generator`` (:func:`droplab.functional.draw_seed`; default torch's global
    generator), over the row-major index of :math:`P`, of shape ``(*batch, L, S)`` (the batch
    dimensions of ``query`` and ``key`` broadcast). So ``keep_mask(seed, (*batch, L, S), dropout_p)`` is the exact
    mask a call used, where ``seed`` is ``draw_seed`` of a copy of the generator taken before it.
    Backward recomputes :math:`P` (one more ``Q K^T``) and regenerates the mask: autograd keeps
    ``query``, ``key``, ``value``, one float per row of :math:`P`, ``attn_mask`` if given, and
    two numbers.

    Args:
        query: :math:`(..., L, E)`; float16, bfloat16 (computed in float32), float32 or float64.
        key: :math:`(..., S, E)`, the same dtype.
        value: :math:`(..., S, E_v)`, the same dtype.
        attn_mask: bool, or of the query's dtype (differentiable), broadcastable to
            :math:`(..., L, S)`. Default: none.
        dropout_p: probability of dropping an attention probability, in [0, 1]. Default: 0.
        is_causal: mask out the upper triangle (``attn_mask`` must then be ``None``).
        scale: the factor of :math:`Q K^T`. Default: :math:`1/\sqrt{E}`.
        enable_gqa: grouped-query attention: ``key`` and ``value`` have :math:`H_k` heads (dim
            -3), a divisor of the query's :math:`H`, each shared by :math:`H / H_k` query heads.
        generator: the ``torch.Generator`` to draw the seed from.

    Shape:
        - Output: :math:`(..., L, E_v)`, the batch dimensions of ``query``, ``key`` and
          ``value`` broadcast.

    Examples::

        >>> import torch
        >>> import torch.nn.functional as TF
        >>> from droplab.functional import draw_seed, keep_mask, scaled_dot_product_attention
        >>> q, k, v = torch.randn(3, 2, 4, 5, 8).unbind(0)  # (batch, heads, L, E)
        >>> torch.allclose(scaled_dot_product_attention(q, k, v, is_causal=True),
        ...                TF.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)
        True
        >>> g = torch.Generator().manual_seed(7)
        >>> seed = draw_seed(torch.Generator().set_state(g.get_state()))  # the seed the call draws
        >>> out = scaled_dot_product_attention(q, k, v, dropout_p=0.1, generator=g)
        >>> mask = keep_mask(seed, (2, 4, 5, 5), 0.1)
        >>> probs = torch.softmax(q @ k.transpose(-2, -1) / 8**0.5, dim=-1)
        >>> torch.allclose(out, (probs * mask / 0.9) @ v, atol=1e-6)
        True
    """
    if has_torch_function((query, key, value)):  # a torch.fx.Proxy (symbolic_trace) records the call
        return handle_torch_function(scaled_dot_product_attention, (query, key, value), query, key, value,
                                     attn_mask, dropout_p, is_causal, scale, enable_gqa, generator=generator)
    p = F.check_probability(dropout_p)
    groups = _check(query, key, value, attn_mask, is_causal, enable_gqa)
    if p == 0.0:
        return torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask, 0.0, is_causal, scale=scale, enable_gqa=enable_gqa)
    scale = 1.0 / math.sqrt(query.shape[-1] or 1) if scale is None else float(scale)  # E = 0: the scores are 0
    return _attend(query, key, value, attn_mask, p, scale, is_causal, groups, generator)


def _attend(q, k, v, mask, p, scale, causal, groups, generator) -> Tensor:
    """The attention with dropout, where the call runs: eagerly through :class:`_Attention`; in a graph
    (``torch.compile``, ``torch.export``) or on meta and fake tensors through :func:`_traced`."""
    if torch.compiler.is_compiling():
        return _traced(q, k, v, mask, p, scale, causal, groups, F._graph_seed(generator))
    if F._without_data(q):  # the result's metadata, no draw
        return _traced(q, k, v, mask, p, scale, causal, groups, F._data_free_seed(q, generator))
    device = q.device.type
    if torch.is_autocast_enabled(device):  # as torch's attention under autocast: in the autocast dtype
        low = torch.get_autocast_dtype(device)
        with torch.autocast(device, enabled=False):
            return _attend(q.to(low), k.to(low), v.to(low), mask, p, scale, causal, groups, generator)
    _refuse_functorch(q, k, v)
    if any(map(F._has_tangent, (q, k, v))):
        raise NotImplementedError(
            "droplab.functional.scaled_dot_product_attention has no forward-mode AD (a dual tensor was given): "
            "use torch.nn.functional.scaled_dot_product_attention there")
    F._refuse_jit_trace()
    if mask is not None and mask.is_floating_point():  # added to the scores in their dtype (its gradient cast back)
        mask = mask.to(_wide(q).dtype)
    return _Attention.apply(q, k, v, mask, p, F.draw_seed(generator), scale, causal, groups, KEEP_PROBS)


def _refuse_functorch(*tensors: Tensor) -> None:
    if any(torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors):
        raise NotImplementedError(
            "droplab.functional.scaled_dot_product_attention does not support torch.func transforms (grad, vmap, "
            "jvp, ...): use torch.autograd.grad or .backward(), or torch.nn.functional.scaled_dot_product_attention")


def _traced(q, k, v, mask, p, scale, causal, groups, seed: Tensor) -> Tensor:
    """The same expression for ``torch.compile``, ``torch.export``, meta and fake tensors: torch's ops and
    the custom op ``droplab::seeded_dropout`` (autograd saves what those ops save: the probabilities, not the
    mask)."""
    s = _scores(_wide(q), _expand(_wide(k), groups), mask, causal, scale)
    lse = torch.logsumexp(s, dim=-1, keepdim=True)
    probs = s.sub(lse.masked_fill(lse == -math.inf, 0.0)).exp()  # out of place: autograd keeps lse
    dropped = probs * 0.0 if p == 1.0 else F.seeded_dropout_op(probs, p, seed)
    return torch.matmul(dropped, _expand(_wide(v), groups)).to(q.dtype)
