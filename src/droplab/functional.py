r"""Dropout as functions.

Dropout: A Simple Way to Prevent Neural Networks from Overfitting
    N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever, R. Salakhutdinov, JMLR 15 (2014).

``dropout_reference`` is the lecture's inverted dropout, written to be read: draw a
Bernoulli keep-mask from uniform samples, multiply, rescale by :math:`1/(1-p)`.
``dropout`` is the fast path with the same semantics, used by the layers, models and
training: a counter-based mask (a hash of seed and element index) computed by a compiled
kernel, regenerated in backward instead of stored.

Parallel random numbers: as easy as 1, 2, 3
    J. Salmon, M. Moraes, R. Dror, D. Shaw, SC 2011 (counter-based generators).
"""

from __future__ import annotations

from numbers import Real

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensor
from torch.autograd import forward_ad
from torch.overrides import handle_torch_function, has_torch_function_unary

_INTEGERS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)

__all__ = [
    "check_probability",
    "check_dropout_args",
    "dropout_reference",
    "draw_seed",
    "seeded_dropout",
    "seeded_dropout_op",
    "dropout",
    "IMPLEMENTATIONS",
    "check_impl",
]


def check_probability(p: float) -> float:
    """Return ``p`` as a float if it is a real number in [0, 1] (a 0-dim real tensor too, as torch
    takes it); raise otherwise."""
    if isinstance(p, Tensor) and p.dim() == 0 and (p.is_floating_point() or p.dtype in _INTEGERS):
        p = p.item()
    if isinstance(p, bool) or not isinstance(p, Real):
        raise TypeError(f"dropout probability p must be a real number in [0, 1], got {p!r}")
    if not 0.0 <= p <= 1.0:  # NaN too (a comparison that torch.compile traces with p symbolic, as math.isnan is not)
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
    r"""Inverted dropout, exactly as the lecture writes it: zero each element of ``x`` with
    probability ``p``, scale the rest by :math:`1/(1-p)`.

    See :class:`droplab.nn.Dropout` for the math and shapes. The keep-mask is ``u > p`` for
    ``u`` uniform on [0, 1), drawn in float32 whatever the dtype of ``x``, from ``generator``;
    the result is ``mask * x / (1 - p)``, and its gradient, through autograd, ``mask / (1 - p)``.

    Args:
        x: input tensor of any shape and floating dtype.
        p: probability of zeroing an element, in [0, 1]. ``p = 0`` returns ``x`` itself;
            ``p = 1`` returns zeros (no division by zero).
        training: apply dropout if ``True``; otherwise return ``x`` unchanged.
        generator: a ``torch.Generator`` for the uniform draws (default: torch's global one).

    Examples::

        The lecture's quick check, on a 2×8 input:

        >>> import torch
        >>> from droplab.functional import dropout_reference
        >>> x = torch.arange(16, dtype=torch.float32).reshape(2, 8)
        >>> _ = torch.manual_seed(0)
        >>> dropout_reference(x, 0.0)  # nothing dropped: x itself
        tensor([[ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.],
                [ 8.,  9., 10., 11., 12., 13., 14., 15.]])
        >>> dropout_reference(x, 0.5)  # about half dropped, the rest doubled
        tensor([[ 0.,  2.,  0.,  0.,  0., 10.,  0., 14.],
                [ 0., 18.,  0.,  0.,  0.,  0.,  0., 30.]])
        >>> dropout_reference(x, 1.0)  # everything dropped
        tensor([[0., 0., 0., 0., 0., 0., 0., 0.],
                [0., 0., 0., 0., 0., 0., 0., 0.]])
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


def draw_seed(generator: torch.Generator | None = None) -> int:
    """One 64-bit seed from ``generator`` (default: torch's global CPU generator).

    Advances the generator by one draw, so ``torch.manual_seed`` reproduces every mask.
    """
    return int(_seed_tensor(generator))


def _seed_tensor(generator: torch.Generator | None = None) -> Tensor:
    return torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64, generator=generator)


_cpu_kernels = None  # droplab.kernels.cpu, imported on first use (its first call loads or builds the C kernel)


def _kernel(x: Tensor, p: float, seed: int) -> Tensor:
    """Dropout of ``x`` with the counter-based mask of ``seed``; ``0 < p < 1``. No autograd."""
    global _cpu_kernels
    src = x.detach() if x.requires_grad else x
    if src.is_neg():  # a lazily negated view (e.g. of a conjugate's imaginary part): the kernel reads memory
        src = src.resolve_neg()
    if not src.is_contiguous():  # the mask follows the logical (row-major) index; the result, x's layout
        out = torch.empty_like(src)
        return out.copy_(_kernel(src.contiguous(), p, seed))
    if not src.is_cpu:
        if src.is_cuda:
            from .kernels import cuda

            return cuda.seeded_dropout(src, p, seed)
        raise NotImplementedError(f"droplab's fast dropout runs on CPU and CUDA, not {src.device.type}")
    if _cpu_kernels is None:
        from .kernels import cpu as _cpu_kernels
    if src.dtype in (torch.float32, torch.float64):
        out = _cpu_kernels.empty_like(src)
        _cpu_kernels.dropout_into(src, out, seed, p, torch.get_num_threads())
        return out
    # float16 / bfloat16: compute in float32 and round once, as torch does for these types
    wide = src.float()
    _cpu_kernels.dropout_into(wide, wide, seed, p, torch.get_num_threads())
    return wide.to(src.dtype)


class _SeededDropout(torch.autograd.Function):
    """Eager autograd for the kernel: saves two numbers (seed, p), never a mask.

    Old-style (``forward(ctx, ...)``): it costs a few microseconds a call where the
    ``setup_context`` style costs about 25, but torch.func cannot transform it (``dropout``
    refuses torch.func with a clear error). Under torch.compile ``dropout`` uses the custom
    op ``droplab::seeded_dropout`` below instead.
    """

    @staticmethod
    def forward(ctx, x: Tensor, p: float, seed: int) -> Tensor:
        ctx.p, ctx.seed = p, seed
        return _kernel(x, p, seed)

    @staticmethod
    def jvp(ctx, tangent: Tensor, *_) -> Tensor:
        # forward-mode AD: the tangent goes through the same linear map
        return _kernel(tangent, ctx.p, ctx.seed)

    @staticmethod
    def backward(ctx, grad: Tensor):
        # dropout is linear in x: the gradient is the same mask and scale applied to grad.
        # With create_graph (double backward) apply the Function again, so it is differentiable.
        if torch.is_grad_enabled():
            return _SeededDropout.apply(grad, ctx.p, ctx.seed), None, None
        return _kernel(grad, ctx.p, ctx.seed), None, None


def seeded_dropout(x: Tensor, p: float, seed: int) -> Tensor:
    """Dropout with the counter-based mask of ``seed`` (see :mod:`droplab.kernels.counter`).

    ``0 < p < 1``. Kept elements are ``x / (1 - p)``, dropped ones ``x * 0``, exactly as
    ``mask * x / (1 - p)`` computes them. Differentiable; the gradient is the same operation
    on the incoming gradient with the same seed.
    """
    return _SeededDropout.apply(x, p, seed)


# For torch.compile: the same kernel as an opaque custom op (no graph break). The seed is a
# 0-dim int64 tensor so that drawing it stays inside the graph.
@torch.library.custom_op("droplab::seeded_dropout", mutates_args=())
def seeded_dropout_op(x: Tensor, p: float, seed: Tensor) -> Tensor:
    return _kernel(x, p, int(seed))


@seeded_dropout_op.register_fake
def _(x: Tensor, p: float, seed: Tensor) -> Tensor:
    return x.new_empty(x.shape) if x.is_contiguous() else torch.empty_like(x)  # the layout _kernel returns


def _op_setup_context(ctx, inputs, output) -> None:
    _, ctx.p, seed = inputs
    ctx.save_for_backward(seed)  # 8 bytes, whatever the size of x


def _op_backward(ctx, grad: Tensor):
    (seed,) = ctx.saved_tensors
    return seeded_dropout_op(grad, ctx.p, seed), None, None


seeded_dropout_op.register_autograd(_op_backward, setup_context=_op_setup_context)


_seed_outside_graph = torch.compiler.disable(
    _seed_tensor,
    reason="a torch.Generator cannot enter a graph: droplab draws the seed of generator= outside it, "
    "a graph break (fullgraph=True refuses it); without generator= the draw stays in the graph",
)


def _graph_seed(generator: torch.Generator | None) -> Tensor:
    """The seed as a 0-dim int64 tensor drawn inside the graph (torch.compile, torch.export): a new one
    per call of the compiled code, the same draw as :func:`draw_seed` eagerly (from a ``generator``: outside
    the graph, a graph break)."""
    return _seed_tensor() if generator is None else _seed_outside_graph(generator)


def _without_data(x: Tensor) -> bool:
    """Whether ``x`` is a meta or fake tensor: no values to draw a mask for, only the result's metadata."""
    return x.is_meta or (type(x) is not Tensor and isinstance(x, FakeTensor))  # a plain tensor skips the isinstance


def _data_free_seed(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """The seed for a meta or fake ``x``: drawn as a meta, or fake, tensor, so the real generator does not
    advance, and a graph traced from fake tensors (``make_fx``) draws a new seed per call, not a constant."""
    if x.is_meta:
        return torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64, device="meta")
    return _seed_tensor(generator)


def _refuse_jit_trace() -> None:
    if torch._C._is_tracing():  # torch.jit.is_tracing() without its check for scripting (refused anyway)
        raise RuntimeError(
            "torch.jit.trace cannot record droplab's dropout: the trace would keep this call's mask as a "
            "constant, the same on every call. Trace the model in eval() mode (dropout is then the identity), "
            "or use torch.compile or torch.export, whose graphs draw a new mask per call"
        )


def _dispatch(x: Tensor, p: float, training: bool, inplace: bool, generator: torch.Generator | None,
              graph, eager) -> Tensor:
    """The path every dropout-like function of droplab takes once ``x`` is a tensor and ``p`` checked: ``x``
    itself when not training or at p = 0 (as torch, whatever its dtype), ``x * 0`` at p = 1, else
    ``graph(x, p, seed)`` with a 0-dim seed tensor in a graph (torch.compile, torch.export: drawn there) or on
    meta and fake tensors (0: no values, no draw), or ``eager(x, p, seed)`` with a drawn seed; the result
    written into ``x`` when ``inplace``."""
    if not training or p == 0.0:
        return x
    check_dropout_args(x, p)
    if p == 1.0:
        out = x * 0.0  # as torch: NaN and inf give NaN
    elif torch.compiler.is_compiling():
        out = graph(x, p, _graph_seed(generator))
    elif _without_data(x):
        out = graph(x, p, _data_free_seed(x, generator))
    else:
        _refuse_functorch(x)
        _refuse_jit_trace()
        out = eager(x, p, draw_seed(generator))
    return x.copy_(out) if inplace else out


def _has_tangent(x: Tensor) -> bool:
    """Whether ``x`` is a dual tensor of forward-mode AD (``torch.autograd.forward_ad``)."""
    return forward_ad._current_level >= 0 and forward_ad.unpack_dual(x).tangent is not None


def _refuse_functorch(x: Tensor) -> None:
    if torch._C._functorch.is_functorch_wrapped_tensor(x):
        raise NotImplementedError(
            "droplab.functional.dropout does not support torch.func transforms (grad, vmap, jvp, "
            "jacrev...): use torch.autograd.grad or .backward(), which support double backward, "
            "or droplab.functional.dropout_reference, which works under torch.func.grad"
        )


def dropout(
    x: Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    generator: torch.Generator | None = None,
    broadcast_dims: tuple[int, ...] = (),
) -> Tensor:
    r"""Inverted dropout, fast: the entry point the layers, models and training use.

    See :class:`droplab.nn.Dropout` for the math and shapes; the semantics are those of
    :func:`dropout_reference`, with another mask. A counter-based kernel computes it: the keep
    bit of element ``i`` is a hash of ``(seed, i, p)`` (:mod:`droplab.kernels.counter`), with
    one 64-bit seed drawn per call from ``generator`` (default: torch's global generator). So

    - ``torch.manual_seed`` reproduces every mask, and the mask does not depend on the number
      of threads or on the device (CPU: C, compiled on first use, or numba where no C compiler
      works; CUDA: Triton; the same hash);
    - autograd saves no mask (0 bytes per element): backward regenerates it from the seed.

    Args:
        x: input tensor of any shape and floating dtype (float16, bfloat16, float32, float64).
        p: probability of zeroing an element, in [0, 1]. Default: 0.5.
        training: apply dropout if ``True``; otherwise return ``x`` unchanged.
        inplace: write the result into ``x``.
        generator: a ``torch.Generator`` to draw the seed from.
        broadcast_dims: dimensions along which one keep decision is shared (Flax's meaning; e.g.
            ``(2, 3)`` on ``(N, C, H, W)`` drops whole channels): :mod:`droplab.structured`.

    Returns:
        A contiguous tensor of the shape and dtype of ``x`` (``x`` itself when ``training`` is
        false, ``p = 0`` or ``inplace``).

    Examples::

        >>> import torch
        >>> from droplab.functional import dropout
        >>> x = torch.arange(16, dtype=torch.float32).reshape(2, 8)
        >>> _ = torch.manual_seed(0)
        >>> dropout(x, 0.5)  # another mask than dropout_reference's for the same seed
        tensor([[ 0.,  0.,  4.,  6.,  8., 10., 12.,  0.],
                [16., 18., 20., 22., 24., 26.,  0., 30.]])
        >>> y = dropout(torch.ones(4, 4), p=0.25)
        >>> torch.unique(y)  # dropped: 0; kept: 1 / (1 - p)
        tensor([0.0000, 1.3333])
        >>> x = torch.ones(3, requires_grad=True)
        >>> _ = torch.manual_seed(1)
        >>> y = dropout(x, 0.5)
        >>> y.sum().backward()
        >>> torch.equal(x.grad, y.detach())  # the gradient: the same mask and scale
        True
    """
    if has_torch_function_unary(x):  # a torch.fx.Proxy (symbolic_trace) records the call, as for torch's dropout
        return handle_torch_function(dropout, (x,), x, p=p, training=training, inplace=inplace, generator=generator,
                                     broadcast_dims=broadcast_dims)  # fmt: skip
    if broadcast_dims:
        from .structured import structured_dropout

        return structured_dropout(x, p, broadcast_dims, training, inplace, generator)
    if not isinstance(x, Tensor):
        raise TypeError(f"dropout expects a torch.Tensor as input, got {type(x).__name__}")
    # in a graph, and on meta or fake tensors (whose metadata the custom op's fake gives), the custom op
    return _dispatch(x, check_probability(p), training, inplace, generator, seeded_dropout_op, _eager)


def _eager(x: Tensor, p: float, seed: int) -> Tensor:
    if (x.requires_grad and torch.is_grad_enabled()) or _has_tangent(x):
        return _SeededDropout.apply(x, p, seed)
    return _kernel(x, p, seed)  # nothing to differentiate: skip the autograd.Function's few microseconds


IMPLEMENTATIONS = {"fast": dropout, "reference": dropout_reference}


def check_impl(impl: str) -> str:
    """Return ``impl`` if it names a dropout implementation; raise ``ValueError`` otherwise."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"dropout impl must be one of {', '.join(IMPLEMENTATIONS)}; got {impl!r}")
    return impl


# Functions of this interface that live in modules of their own, built on the kernel above, found on
# first use: structured dropout (one keep decision shared along dimensions), dropout fused with a
# residual add (and a bias), attention whose dropout mask is regenerated in backward, alpha dropout.
_ELSEWHERE = {
    "structured": ("keep_mask", "structured_dropout", "dropout1d", "dropout2d", "dropout3d", "drop_path"),
    "residual": ("dropout_add", "bias_dropout_add"),
    "attention": ("scaled_dot_product_attention",),
    "alpha": ("alpha_dropout",),
}
__all__ += [name for names in _ELSEWHERE.values() for name in names]


def __getattr__(name: str):
    for module, names in _ELSEWHERE.items():
        if name in names:
            import importlib

            return getattr(importlib.import_module(f"{__package__}.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
