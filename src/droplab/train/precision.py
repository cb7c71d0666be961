"""The arithmetic of a run's matrix products: fp32, or bf16 where the CPU computes it natively.

``precision="bf16"`` runs each forward pass under ``torch.autocast`` with bfloat16: the linear
layers' products and what follows them compute in bf16, while the weights, their gradients,
the optimizer and the loss stay in fp32 (the logits are cast back before the loss). It pays
only on a CPU with bf16 arithmetic: AMX (Intel Sapphire Rapids and later) or AVX512-BF16 (Intel
Cooper Lake, AMD Zen 4). Elsewhere bf16 would be emulated, slower than fp32, so the run falls
back to fp32 and says so in a note.
"""

from __future__ import annotations

import contextlib
import functools
import sys

import torch

from .config import PRECISIONS  # noqa: F401 (the field's choices)

__all__ = ["PRECISIONS", "BF16_FLAGS", "bf16_native", "resolve", "autocast"]

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo's names of native bf16 arithmetic


@functools.lru_cache(maxsize=1)
def bf16_native() -> str | None:
    """The flag of this CPU's native bf16 arithmetic (``amx_bf16``, ``avx512_bf16``), or None
    (none, or not Linux: the flags are read from ``/proc/cpuinfo``)."""
    if sys.platform != "linux":
        return None
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return None
    return next((flag for flag in BF16_FLAGS if flag in flags), None)


def resolve(precision: str) -> tuple[str, str | None]:
    """The precision a run uses for the one asked, and a note when they differ.

    Examples::

        >>> resolve("fp32")
        ('fp32', None)
    """
    if precision == "bf16" and bf16_native() is None:
        return "fp32", "bf16 asked for, but this CPU has neither AMX nor AVX512-BF16 (emulated bf16 is slower): fp32"
    return precision, None


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """The context a forward pass runs in: bf16 autocast on the CPU, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
