"""How much memory autograd keeps for backward, measured with ``saved_tensors_hooks``."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["saved_bytes"]


def saved_bytes(fn: Callable[..., object], *args: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn(*args)`` runs.

    Examples::

        >>> x = torch.randn(512, 512, requires_grad=True)
        >>> saved_bytes(lambda t: torch.nn.functional.dropout(t, 0.5), x) >= 512 * 512
        True
    """
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return total
