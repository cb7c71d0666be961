"""The CPU dropout kernel in numba (parallel, vectorized): the fallback where the C kernel
(:mod:`droplab.kernels.native`) cannot be built, with its API and its bits.

Computes ``out[i] = x[i] / keep`` where element i is kept, ``x[i] * 0`` where it is dropped
(so NaN stays NaN, as in ``mask * x / (1 - p)``), with the mask of
:mod:`droplab.kernels.counter`; ReLU then dropout, fused, in place; and that pair's backward from
its output. Work is split over threads by whole blocks, so the result is the same for any number
of threads. Compiled on first use and cached on disk (numba's cache: ``__pycache__`` beside this
file, or ``NUMBA_CACHE_DIR``): importing numba and loading the cache take about 0.4 s a process.
"""

from __future__ import annotations

import functools
import threading

import numba
import numpy as np
import torch
from numba import njit, prange, types, uint64
from numba.extending import intrinsic

from .counter import GOLDEN, HALF, MIX1, MIX2, threshold

__all__ = ["NAME", "numba_threads", "set_threads", "dropout", "relu_dropout", "relu_dropout_backward", "dropout_add"]

NAME = "numba"

_G, _M1, _M2 = uint64(GOLDEN), uint64(MIX1), uint64(MIX2)


@njit(inline="always")
def _mix(z):
    z = (z ^ (z >> uint64(30))) * _M1
    z = (z ^ (z >> uint64(27))) * _M2
    return z ^ (z >> uint64(31))


@njit(inline="always")
def _apply(x, kept, keep, relu):
    if relu and x < 0:  # ReLU first where asked (NaN stays NaN)
        x = keep - keep
    return x / keep if kept else x * (keep - keep)


@njit(nogil=True, cache=True)
def _blocks(x, out, seed, thr, keep, first_block, relu):
    """x, out: 1-D slices starting at block ``first_block``; whole blocks, then a partial one.

    ``u32 >= thr`` is tested in 64 bits without extracting the halves (faster, same bits):
    low half ``(z << 32) >= thr << 32``, high half ``z >= thr << 32``.
    """
    n = x.size
    cut = uint64(thr) << uint64(32)
    full = n // (2 * HALF)
    for b in range(full):
        base = seed + uint64((first_block + b) * HALF + 1) * _G
        xs = x[b * 2 * HALF : (b + 1) * 2 * HALF]  # slices keep indices non-negative: vectorizes
        os = out[b * 2 * HALF : (b + 1) * 2 * HALF]
        for k in range(HALF):
            z = _mix(base + uint64(k) * _G)
            os[k] = _apply(xs[k], (z << uint64(32)) >= cut, keep, relu)
            os[HALF + k] = _apply(xs[HALF + k], z >= cut, keep, relu)
    rest = n - full * 2 * HALF
    if rest > 0:
        base = seed + uint64((first_block + full) * HALF + 1) * _G
        s = full * 2 * HALF
        for k in range(rest):
            if k < HALF:
                kept = (_mix(base + uint64(k) * _G) << uint64(32)) >= cut
            else:
                kept = _mix(base + uint64(k - HALF) * _G) >= cut
            out[s + k] = _apply(x[s + k], kept, keep, relu)


@njit(parallel=True, cache=True)
def _parallel(x, out, seed, thr, keep, chunks, relu):
    nblocks = (x.size + 2 * HALF - 1) // (2 * HALF)
    per = (nblocks + chunks - 1) // chunks
    for c in prange(chunks):
        b0 = c * per
        b1 = min(b0 + per, nblocks)
        if b0 < b1:
            lo, hi = b0 * 2 * HALF, min(b1 * 2 * HALF, x.size)
            _blocks(x[lo:hi], out[lo:hi], seed, thr, keep, b0, relu)


_threads = threading.local()  # numba's thread count is per calling thread; remember the last set


def numba_threads(requested: int) -> int:
    """Use ``requested`` numba threads (capped at numba's pool size); return the number used."""
    n = max(1, min(requested, numba.config.NUMBA_NUM_THREADS))
    if getattr(_threads, "n", None) != n:
        numba.set_num_threads(n)
        _threads.n = n
    return n


def _start_pool() -> None:
    """Start numba's thread pool now, leaving torch's thread count as it was.

    numba's OpenMP threading layer (``omp``, the one it picks where TBB is absent) starts its
    pool with ``omp_set_num_threads(NUMBA_NUM_THREADS)``. Its OpenMP symbols bind to the
    ``libgomp`` torch loaded into the global namespace, so that call also set torch's
    intra-op thread count (``torch.get_num_threads()``) to the pool size: a run set to 1
    thread ran on all cores from its first dropout on. Started here, at import, and undone.
    The kernel's own regions pass their thread count explicitly and leave torch's alone.
    """
    before = torch.get_num_threads()  # also runs torch's per-thread lazy init first
    numba.get_num_threads()  # starts the pool (once per process)
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


_start_pool()


@intrinsic
def _pointer(typingctx, address, like):
    """A pointer to ``like``'s type at the integer ``address`` (a tensor's ``data_ptr()``)."""
    sig = types.CPointer(like)(address, like)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


@njit(cache=True)
def _run(x_address, out_address, n, seed, thr, keep, chunks, relu):
    """The kernel on ``n`` elements at two addresses (the same for in place), typed by ``keep``;
    ``relu``: ReLU first.

    Taking addresses, not arrays, saves the numpy views and the array type checks of a call:
    about 2 of the 3 microseconds a small tensor's call used to cost.
    """
    x = numba.carray(_pointer(x_address, keep), n)
    out = numba.carray(_pointer(out_address, keep), n)
    if chunks > 1:
        _parallel(x, out, seed, thr, keep, chunks, relu)
    else:
        _blocks(x, out, seed, thr, keep, 0, relu)


@njit(nogil=True, cache=True)
def _add_blocks(x, bias, r, out, seed, thr, keep, first_block, has_bias):
    """``out = r + dropout(x [+ bias])`` on whole blocks (slices starting at ``first_block``), as the C
    kernel's ``add_body``: first ``x + bias`` into a block's buffer, in runs of consecutive bias indices, then
    the mask (``out`` may be ``x`` or ``r``)."""
    n, bias_n = x.size, bias.size
    cut = uint64(thr) << uint64(32)
    biased = np.empty(2 * HALF if has_bias else 1, x.dtype)
    for b in range((n + 2 * HALF - 1) // (2 * HALF)):
        lo = b * 2 * HALF
        m = min(2 * HALF, n - lo)
        base = seed + uint64((first_block + b) * HALF + 1) * _G
        ts, rs, os = x[lo : lo + m], r[lo : lo + m], out[lo : lo + m]
        if has_bias:
            j = ((first_block + b) * 2 * HALF) % bias_n
            k = 0
            while k < m:
                run = min(bias_n - j, m - k)
                biased[k : k + run] = ts[k : k + run] + bias[j : j + run]
                k += run
                j = 0
            ts = biased[:m]
        for k in range(min(m, HALF)):
            z = _mix(base + uint64(k) * _G)
            os[k] = _apply(ts[k], (z << uint64(32)) >= cut, keep, False) + rs[k]
            if HALF + k < m:
                os[HALF + k] = _apply(ts[HALF + k], z >= cut, keep, False) + rs[HALF + k]


@njit(parallel=True, cache=True)
def _add_run(x_address, bias_address, bias_n, r_address, out_address, n, seed, thr, keep, chunks, has_bias):
    """The residual kernel on addresses (``bias_address`` is read only where ``has_bias``)."""
    x = numba.carray(_pointer(x_address, keep), n)
    bias = numba.carray(_pointer(bias_address, keep), bias_n)
    r = numba.carray(_pointer(r_address, keep), n)
    out = numba.carray(_pointer(out_address, keep), n)
    nblocks = (n + 2 * HALF - 1) // (2 * HALF)
    per = (nblocks + chunks - 1) // chunks
    for c in prange(chunks):
        b0 = c * per
        b1 = min(b0 + per, nblocks)
        if b0 < b1:
            lo, hi = b0 * 2 * HALF, min(b1 * 2 * HALF, n)
            _add_blocks(x[lo:hi], bias, r[lo:hi], out[lo:hi], seed, thr, keep, b0, has_bias)


@njit(nogil=True, cache=True)
def _backward_range(g, out, gin, keep, lo, hi):
    for i in range(lo, hi):
        gin[i] = g[i] / keep if out[i] > 0 else keep - keep


@njit(parallel=True, cache=True)
def _backward(g_address, out_address, gin_address, n, keep, chunks):
    """``gin = out > 0 ? g / keep : 0`` on ``n`` elements, in ``chunks`` contiguous runs."""
    g = numba.carray(_pointer(g_address, keep), n)
    out = numba.carray(_pointer(out_address, keep), n)
    gin = numba.carray(_pointer(gin_address, keep), n)
    per = (n + chunks - 1) // chunks
    for c in prange(chunks):
        _backward_range(g, out, gin, keep, c * per, min(n, (c + 1) * per))


def set_threads(requested: int) -> int:
    """numba's thread count for the next calls: :func:`numba_threads`."""
    return numba_threads(requested)


# The kernels on raw addresses (``Tensor.data_ptr()``): checked by droplab.kernels.cpu, not here.
def dropout(x: int, out: int, n: int, seed: int, p: float, dtype: torch.dtype, chunks: int) -> None:
    thr, keep = _constants(p, dtype)
    _run(x, out, n, np.uint64(seed), thr, keep, chunks, False)


def relu_dropout(h: int, n: int, seed: int, p: float, dtype: torch.dtype, chunks: int) -> None:
    thr, keep = _constants(p, dtype)
    _run(h, h, n, np.uint64(seed), thr, keep, chunks, True)


def relu_dropout_backward(g: int, out: int, gin: int, n: int, p: float, dtype: torch.dtype, chunks: int) -> None:
    _backward(g, out, gin, n, _constants(p, dtype)[1], chunks)


def dropout_add(x: int, bias: int | None, bias_n: int, residual: int, out: int, n: int, seed: int, p: float,
                dtype: torch.dtype, chunks: int) -> None:
    thr, keep = _constants(p, dtype)
    has_bias = bias is not None
    _add_run(x, bias if has_bias else x, bias_n if has_bias else 1, residual, out, n, np.uint64(seed), thr, keep,
             chunks, has_bias)


@functools.lru_cache(maxsize=64)
def _constants(p: float, dtype: torch.dtype) -> tuple[np.uint32, np.floating]:
    """The kernel's threshold and ``1 - p`` in the tensor's dtype (cached: p repeats)."""
    return np.uint32(threshold(p)), _NUMPY[dtype](1.0 - p)


_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}
