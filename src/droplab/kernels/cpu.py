"""The counter-based dropout mask on CPU, compiled with numba (parallel, vectorized).

Computes ``out[i] = x[i] / keep`` where element i is kept, ``x[i] * 0`` where it is dropped
(so NaN stays NaN, as in ``mask * x / (1 - p)``), with the mask of
:mod:`droplab.kernels.counter`. Work is split over threads by whole blocks, so the result is
the same for any number of threads. Compiled on first use and cached on disk (numba's cache:
``__pycache__`` beside this file, or ``NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import ctypes
import functools
import sys
import threading

import numba
import numpy as np
import torch
from numba import njit, prange, types, uint64
from numba.extending import intrinsic

from .counter import GOLDEN, HALF, MASK64, MIX1, MIX2, threshold

__all__ = ["dropout_into", "empty_like", "numba_threads"]

_G, _M1, _M2 = uint64(GOLDEN), uint64(MIX1), uint64(MIX2)


@njit(inline="always")
def _mix(z):
    z = (z ^ (z >> uint64(30))) * _M1
    z = (z ^ (z >> uint64(27))) * _M2
    return z ^ (z >> uint64(31))


@njit(inline="always")
def _apply(x, kept, keep):
    return x / keep if kept else x * (keep - keep)


@njit(nogil=True, cache=True)
def _blocks(x, out, seed, thr, keep, first_block):
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
            os[k] = _apply(xs[k], (z << uint64(32)) >= cut, keep)
            os[HALF + k] = _apply(xs[HALF + k], z >= cut, keep)
    rest = n - full * 2 * HALF
    if rest > 0:
        base = seed + uint64((first_block + full) * HALF + 1) * _G
        s = full * 2 * HALF
        for k in range(rest):
            if k < HALF:
                kept = (_mix(base + uint64(k) * _G) << uint64(32)) >= cut
            else:
                kept = _mix(base + uint64(k - HALF) * _G) >= cut
            out[s + k] = _apply(x[s + k], kept, keep)


@njit(parallel=True, cache=True)
def _parallel(x, out, seed, thr, keep, chunks):
    nblocks = (x.size + 2 * HALF - 1) // (2 * HALF)
    per = (nblocks + chunks - 1) // chunks
    for c in prange(chunks):
        b0 = c * per
        b1 = min(b0 + per, nblocks)
        if b0 < b1:
            lo, hi = b0 * 2 * HALF, min(b1 * 2 * HALF, x.size)
            _blocks(x[lo:hi], out[lo:hi], seed, thr, keep, b0)


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


HUGE_PAGE = 1 << 21
HUGE_MIN_BYTES = 8 << 20  # outputs this large are mapped fresh: ask for 2 MiB pages
_MADV_HUGEPAGE = 14
_libc = None


def empty_like(src: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(src)``; for a large output on Linux, backed by transparent huge pages.

    A fresh 64 MiB output costs about 16,000 page faults when first written with 4 KiB pages
    and about 32 with 2 MiB pages (``madvise(MADV_HUGEPAGE)``; harmless where unsupported).
    """
    global _libc
    out = torch.empty_like(src)
    nbytes = out.numel() * out.element_size()
    if nbytes >= HUGE_MIN_BYTES and sys.platform == "linux":
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        start = (out.data_ptr() + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1)
        end = (out.data_ptr() + nbytes) & ~(HUGE_PAGE - 1)
        if end > start:
            _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_HUGEPAGE)
    return out


PARALLEL_MIN = 1 << 15  # below this many elements one thread is faster than a hand-off


@intrinsic
def _pointer(typingctx, address, like):
    """A pointer to ``like``'s type at the integer ``address`` (a tensor's ``data_ptr()``)."""
    sig = types.CPointer(like)(address, like)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


@njit(cache=True)
def _run(x_address, out_address, n, seed, thr, keep, chunks):
    """The kernel on ``n`` elements at two addresses (the same for in place), typed by ``keep``.

    Taking addresses, not arrays, saves the numpy views and the array type checks of a call:
    about 2 of the 3 microseconds a small tensor's call used to cost.
    """
    x = numba.carray(_pointer(x_address, keep), n)
    out = numba.carray(_pointer(out_address, keep), n)
    if chunks > 1:
        _parallel(x, out, seed, thr, keep, chunks)
    else:
        _blocks(x, out, seed, thr, keep, 0)


def dropout_into(x: torch.Tensor, out: torch.Tensor, seed: int, p: float, threads: int) -> None:
    """Write dropout of ``x`` into ``out`` (may be ``x``): contiguous CPU float32/float64 tensors
    of the same dtype and size.

    ``0 < p < 1``; ``threads`` is a request, the result does not depend on it.
    """
    n = x.numel()
    if out.numel() != n or out.dtype != x.dtype or not (x.is_contiguous() and out.is_contiguous()):
        raise ValueError("dropout_into needs contiguous x and out of the same dtype and size")
    thr, keep = _constants(p, x.dtype)
    chunks = numba_threads(threads) if threads > 1 and n >= PARALLEL_MIN else 1
    _run(x.data_ptr(), out.data_ptr(), n, np.uint64(seed & MASK64), thr, keep, chunks)


@functools.lru_cache(maxsize=64)
def _constants(p: float, dtype: torch.dtype) -> tuple[np.uint32, np.floating]:
    """The kernel's threshold and ``1 - p`` in the tensor's dtype (cached: p repeats)."""
    if dtype not in _NUMPY:
        raise TypeError(f"the CPU kernel computes in float32 or float64, got {dtype}")
    return np.uint32(threshold(p)), _NUMPY[dtype](1.0 - p)


_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}
