"""The CPU dropout kernels: checked entry points, dispatched to the C kernel or to numba.

Two backends compute the same bits (the mask of :mod:`droplab.kernels.counter`): the C kernel
of :mod:`droplab.kernels.native`, compiled on first use and loaded in about a millisecond from
its cache, and :mod:`droplab.kernels.numba_cpu`, the fallback where no C compiler works (importing
numba and loading its cache take about 0.4 s a process). ``DROPLAB_CPU_KERNEL`` chooses:
``auto`` (the default: C where it builds, else numba), ``native`` (C or an error saying why) or
``numba``. The choice is made on the first call and holds for the process.

Work is split over threads by whole blocks, so no result depends on the number of threads.
"""

from __future__ import annotations

import ctypes
import os
import sys
from types import ModuleType

import torch

from .counter import MASK64

__all__ = ["ENV", "CHOICES", "KernelChoiceError", "requested", "PARALLEL_MIN", "backend", "native_unavailable_reason",
           "set_threads", "all_finite", "dropout_into", "dropout_add_into", "relu_dropout_", "relu_dropout_backward",
           "empty_like"]

ENV = "DROPLAB_CPU_KERNEL"
CHOICES = ("auto", "native", "numba")
PARALLEL_MIN = 1 << 15  # below this many elements one thread is faster than a hand-off
DTYPES = (torch.float32, torch.float64)

_impl: ModuleType | None = None  # the backend module, chosen on first use


class KernelChoiceError(ValueError):
    """``DROPLAB_CPU_KERNEL`` holds ``value``, which names no backend."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return f"{ENV} = {self.value!r} is invalid: expected one of {', '.join(CHOICES)}"


def requested() -> str:
    """The backend ``DROPLAB_CPU_KERNEL`` asks for (default ``auto``); :class:`KernelChoiceError` if it names none."""
    choice = os.environ.get(ENV, "auto")
    if choice not in CHOICES:
        raise KernelChoiceError(choice)
    return choice


def _choose() -> ModuleType:
    """The backend ``DROPLAB_CPU_KERNEL`` asks for (see the module's docstring)."""
    choice = requested()
    if choice != "numba":
        from . import native

        if choice == "native":
            native.library()  # raises NativeUnavailable with the reason
            return native
        if native.unavailable_reason() is None:
            return native
    from . import numba_cpu

    return numba_cpu


def _backend() -> ModuleType:
    global _impl
    if _impl is None:
        _impl = _choose()
    return _impl


def backend() -> str:
    """The backend this process computes with: ``"native"`` or ``"numba"`` (choosing it if not yet chosen).

    Raises:
        KernelChoiceError: ``DROPLAB_CPU_KERNEL`` is not one of :data:`CHOICES` (a ``ValueError``).
        droplab.kernels.native.NativeUnavailable: it is ``native`` and the C kernel cannot be built.
    """
    return _backend().NAME


def native_unavailable_reason() -> str | None:
    """Why the C kernel is not used, or ``None`` when it is."""
    if backend() == "native":
        return None
    if os.environ.get(ENV) == "numba":
        return f"{ENV} = 'numba'"
    from . import native

    return native.unavailable_reason()


def set_threads(requested: int) -> int:
    """Ask for ``requested`` kernel threads on the next large calls; return how many it will use
    (``requested`` for C; capped at numba's pool, ``NUMBA_NUM_THREADS``, for numba)."""
    return _backend().set_threads(requested)


def _chunks(impl: ModuleType, n: int, threads: int) -> int:
    return impl.set_threads(threads) if threads > 1 and n >= PARALLEL_MIN else 1


def _check(a: torch.Tensor, b: torch.Tensor, p: float, what: str) -> None:
    """Refuse what the kernels cannot take: ``a`` and ``b`` (``b`` may be ``a``) not contiguous CPU
    float32/float64 tensors of one dtype and size, or ``p`` outside (0, 1)."""
    if not (a.is_contiguous() and b.is_contiguous() and a.is_cpu and b.is_cpu and a.numel() == b.numel()
            and a.dtype == b.dtype):
        raise ValueError(f"{what} needs contiguous CPU tensors of the same dtype and size")
    if a.dtype not in DTYPES:
        raise TypeError(f"the CPU kernel computes in float32 or float64, got {a.dtype}")
    if not 0.0 < p < 1.0:
        raise ValueError(f"{what} needs 0 < p < 1, got {p}")


def dropout_into(x: torch.Tensor, out: torch.Tensor, seed: int, p: float, threads: int) -> None:
    """Write dropout of ``x`` into ``out`` (may be ``x``): contiguous CPU float32/float64 tensors
    of the same dtype and size.

    ``0 < p < 1``; ``threads`` is a request, the result does not depend on it.
    """
    _check(x, out, p, "dropout_into")
    impl, n = _impl or _backend(), x.numel()
    impl.dropout(x.data_ptr(), out.data_ptr(), n, seed & MASK64, p, x.dtype, _chunks(impl, n, threads))


def dropout_add_into(x: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor, out: torch.Tensor,
                     seed: int, p: float, threads: int) -> None:
    """Write ``residual + dropout(x + bias)`` (``bias`` may be ``None``) into ``out`` (may be ``x`` or
    ``residual``): contiguous CPU tensors of one dtype, ``x``, ``residual`` and ``out`` of one size,
    ``bias`` a vector of the size of ``x``'s last dimension.

    The same values as the composed expression with the mask of ``seed``: ``x + bias`` rounded, then
    ``/ (1 - p)`` where kept or ``* 0`` where dropped, then ``+ residual``. ``0 < p < 1``.
    """
    _check(x, out, p, "dropout_add_into")
    _check(residual, out, p, "dropout_add_into")
    bias_n = 1
    if bias is not None:
        bias_n = bias.numel()
        if not (bias.is_contiguous() and bias.is_cpu and bias.dtype == x.dtype and bias_n > 0
                and x.dim() >= 1 and bias_n == x.shape[-1]):
            raise ValueError("dropout_add_into needs a contiguous CPU bias of x's dtype and of the size of x's last "
                             f"dimension, got {bias.numel()} values for x of shape {tuple(x.shape)}")
    impl, n = _impl or _backend(), x.numel()
    impl.dropout_add(x.data_ptr(), None if bias is None else bias.data_ptr(), bias_n, residual.data_ptr(),
                     out.data_ptr(), n, seed & MASK64, p, x.dtype, _chunks(impl, n, threads))


def relu_dropout_(h: torch.Tensor, seed: int, p: float, threads: int) -> None:
    """ReLU then dropout, fused, in place on ``h`` (contiguous CPU float32/float64).

    The same values as ``dropout(torch.relu(h))`` with the mask of ``seed`` (up to the sign of
    zero): ``r = 0 if h < 0 else h`` (NaN stays NaN), then ``r / (1 - p)`` where kept, ``r * 0``
    where dropped. ``0 < p < 1``; ``threads`` is a request, the result does not depend on it.
    """
    _check(h, h, p, "relu_dropout_")
    impl, n = _impl or _backend(), h.numel()
    impl.relu_dropout(h.data_ptr(), n, seed & MASK64, p, h.dtype, _chunks(impl, n, threads))


def relu_dropout_backward(grad: torch.Tensor, out: torch.Tensor, p: float, threads: int,
                          into: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """The gradient of :func:`relu_dropout_` with respect to its input, from its output ``out``:
    ``grad / (1 - p)`` where ``out > 0`` (the ReLU passed and the element was kept), else 0.

    Returns:
        ``into`` (a contiguous tensor like ``out``; may be ``grad`` itself), or a new contiguous
        tensor of ``out``'s shape (``grad`` may be non-contiguous).
    """
    grad = grad if grad.is_contiguous() else grad.contiguous()
    _check(grad, out, p, "relu_dropout_backward")
    impl, n = _impl or _backend(), out.numel()
    gin = empty_like(out) if into is None else into
    _check(grad, gin, p, "relu_dropout_backward")
    impl.relu_dropout_backward(grad.data_ptr(), out.data_ptr(), gin.data_ptr(), n, p, out.dtype,
                               _chunks(impl, n, threads))
    return gin


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether no element of ``tensors`` is a NaN or an infinity.

    The C kernel reads each contiguous float32/float64 CPU tensor once with integer operations;
    other tensors, and the numba backend, go through torch: a sum of the sums first (finite
    whenever every element is; finite values summing past the dtype's range fall through), then
    the exact test.
    """
    impl, rest = _impl or _backend(), []
    for t in tensors:
        if impl.NAME == "native" and t.is_cpu and t.dtype in DTYPES and t.is_contiguous():
            if not impl.all_finite(t.data_ptr(), t.numel(), t.dtype):
                return False
        else:
            rest.append(t.detach())
    if not rest or bool(torch.isfinite(torch.stack([t.sum() for t in rest]).sum())):
        return True
    return all(bool(torch.isfinite(t).all()) for t in rest)


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
