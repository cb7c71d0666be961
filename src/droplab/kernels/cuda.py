"""The counter-based dropout mask on CUDA, in Triton: the same hash and layout as
:mod:`droplab.kernels.counter`, so one seed gives the bit-identical mask on CPU and GPU.

One program handles one block of ``2 * HALF`` elements: lane k computes the SplitMix64
word of counter ``block * HALF + k``; its low 32 bits decide element k of the block, its
high 32 bits element ``HALF + k``. Division is IEEE round-to-nearest (``div_rn``), as on
the CPU, so the values match too, not only the mask.

Without a GPU, Triton's interpreter (``TRITON_INTERPRET=1``, set before this module is
imported) runs the same kernel on CPU tensors: the tests use it to check the kernel's
arithmetic against the CPU kernel on machines without CUDA.
"""

from __future__ import annotations

import contextlib

import torch

from .counter import GOLDEN, HALF, MASK64, MIX1, MIX2, threshold

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - CPU-only machines
    triton = None


if triton is not None:

    @triton.jit
    def _words(block, k, seed, golden, mix1, mix2, HALF_: tl.constexpr):  # pragma: no cover - needs a GPU
        """The SplitMix64 words of counters ``block * HALF + k`` (the specification's hash)."""
        z = seed.to(tl.uint64) + (block * HALF_ + k + 1) * golden.to(tl.uint64)
        z = (z ^ (z >> 30)) * mix1.to(tl.uint64)
        z = (z ^ (z >> 27)) * mix2.to(tl.uint64)
        return z ^ (z >> 31)

    @triton.jit
    def _dropout_kernel(
        x_ptr, out_ptr, keep_ptr, n, seed, cut, golden, mix1, mix2, HALF_: tl.constexpr, F64: tl.constexpr
    ):  # pragma: no cover - needs a GPU
        block = tl.program_id(0).to(tl.uint64)
        k = tl.arange(0, HALF_).to(tl.uint64)
        z = _words(block, k, seed, golden, mix1, mix2, HALF_)
        cut64 = cut.to(tl.uint64)
        keep_lo = (z << 32) >= cut64
        keep_hi = z >= cut64
        i_lo = (block * (2 * HALF_) + k).to(tl.int64)
        i_hi = i_lo + HALF_
        keep = tl.load(keep_ptr)  # 1 - p in the compute dtype (float32, or float64)
        x_lo = tl.load(x_ptr + i_lo, mask=i_lo < n, other=0.0).to(keep.dtype)
        x_hi = tl.load(x_ptr + i_hi, mask=i_hi < n, other=0.0).to(keep.dtype)
        if F64:  # float64 division is IEEE round-to-nearest; div_rn takes float32 only
            q_lo, q_hi = x_lo / keep, x_hi / keep
        else:  # float32 `/` is approximate on the GPU: ask for round-to-nearest
            q_lo, q_hi = tl.math.div_rn(x_lo, keep), tl.math.div_rn(x_hi, keep)
        y_lo = tl.where(keep_lo, q_lo, x_lo * 0.0)
        y_hi = tl.where(keep_hi, q_hi, x_hi * 0.0)
        tl.store(out_ptr + i_lo, y_lo.to(out_ptr.dtype.element_ty, fp_downcast_rounding="rtne"), mask=i_lo < n)
        tl.store(out_ptr + i_hi, y_hi.to(out_ptr.dtype.element_ty, fp_downcast_rounding="rtne"), mask=i_hi < n)

    @triton.jit
    def _dropout_add_kernel(
        x_ptr, bias_ptr, r_ptr, out_ptr, keep_ptr, n, bias_n, seed, cut, golden, mix1, mix2,
        HALF_: tl.constexpr, F64: tl.constexpr, HAS_BIAS: tl.constexpr,
    ):  # pragma: no cover - needs a GPU
        """``out = r + dropout(x + bias)``: the mask of ``_dropout_kernel``, the composed expression's roundings."""
        block = tl.program_id(0).to(tl.uint64)
        k = tl.arange(0, HALF_).to(tl.uint64)
        z = _words(block, k, seed, golden, mix1, mix2, HALF_)
        cut64 = cut.to(tl.uint64)
        keep = tl.load(keep_ptr)
        for half in tl.static_range(2):
            kept = ((z << 32) >= cut64) if half == 0 else (z >= cut64)
            i = (block * (2 * HALF_) + k + half * HALF_).to(tl.int64)
            t = tl.load(x_ptr + i, mask=i < n, other=0.0)
            if HAS_BIAS:
                t = t + tl.load(bias_ptr + i % bias_n, mask=i < n, other=0.0)
            q = t / keep if F64 else tl.math.div_rn(t, keep)
            y = tl.where(kept, q, t * 0.0) + tl.load(r_ptr + i, mask=i < n, other=0.0)
            tl.store(out_ptr + i, y, mask=i < n)


def seeded_dropout_add(x: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor, p: float,
                       seed: int) -> torch.Tensor:  # pragma: no cover - GPU
    """``residual + dropout(x + bias)`` (``bias`` may be ``None``) with the mask of ``seed``, in one pass:
    contiguous CUDA float32/float64 tensors of one dtype, ``residual`` of ``x``'s shape, ``bias`` a
    vector of the size of its last dimension. ``0 < p < 1``."""
    _need_triton()
    out = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        return out
    keep = torch.tensor([1.0 - p], dtype=x.dtype, device=x.device)
    with _on(x):
        _dropout_add_kernel[(triton.cdiv(n, 2 * HALF),)](
            x, x if bias is None else bias, residual, out, keep, n, 1 if bias is None else bias.numel(),
            seed & MASK64, threshold(p) << 32, GOLDEN, MIX1, MIX2, HALF_=HALF, F64=x.dtype == torch.float64,
            HAS_BIAS=bias is not None,
        )
    return out


def _on(x: torch.Tensor):
    """Launch on ``x``'s GPU, not the current one (the interpreter's CPU tensors: no device to choose)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _need_triton() -> None:
    if triton is None:
        raise RuntimeError(
            "droplab's dropout on CUDA needs Triton (pip install triton): it computes the same "
            "mask as the CPU kernel"
        )


def seeded_dropout(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:  # pragma: no cover - GPU
    """Dropout of the contiguous CUDA tensor ``x`` with the mask of ``seed``; ``0 < p < 1``."""
    _need_triton()
    out = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        return out
    # float16/bfloat16 compute in float32 and round once at the store, as the CPU path does;
    # 1 - p is rounded to the compute dtype, as torch rounds the divisor.
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    keep = torch.tensor([1.0 - p], dtype=compute, device=x.device)
    grid = (triton.cdiv(n, 2 * HALF),)
    with _on(x):
        _dropout_kernel[grid](
            x, out, keep, n, seed & MASK64, threshold(p) << 32, GOLDEN, MIX1, MIX2, HALF_=HALF,
            F64=compute == torch.float64,
        )
    return out
