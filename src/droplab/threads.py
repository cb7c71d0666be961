"""How many CPU threads a run uses: torch's intra-op threads and the dropout kernel's, set in one place.

The CPU dropout kernel asks for ``torch.get_num_threads()`` threads on every call (capped at
numba's pool where the numba fallback computes it), so setting torch's count here sets both.
The result of a run does not depend on the kernel's thread count; torch's matrix products can
differ in the last bits between thread counts, which is why a run records the count it used.
"""

from __future__ import annotations

import os
from numbers import Integral

import torch

__all__ = ["usable_cores", "use_threads"]


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where known, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def use_threads(requested: int | None) -> tuple[int, str | None]:
    """Use ``requested`` threads for torch and droplab's CPU kernel; return ``(used, note)``.

    ``requested`` is capped at :func:`usable_cores`: more threads than cores only make every
    parallel region wait on threads that cannot run (thousands of them make a run orders of
    magnitude slower). ``None`` keeps torch's current count, capped the same way. ``note``
    says what was changed from the request, or is ``None``. The count holds until changed
    again: no kernel call changes it.

    Raises:
        ValueError: ``requested`` is not ``None`` or an integer >= 1.

    Examples::

        >>> used, note = use_threads(1)
        >>> used, note, torch.get_num_threads()
        (1, None, 1)
        >>> used, note = use_threads(100_000)
        >>> used == usable_cores() == torch.get_num_threads()
        True
        >>> note.startswith("threads 100000 capped at the")
        True
        >>> use_threads(0)
        Traceback (most recent call last):
        ...
        ValueError: threads = 0 is invalid: expected an integer >= 1 (or None for torch's default)
    """
    if requested is not None and (isinstance(requested, bool) or not isinstance(requested, Integral) or requested < 1):
        raise ValueError(f"threads = {requested!r} is invalid: expected an integer >= 1 (or None for torch's default)")
    cores = usable_cores()
    wanted = int(requested) if requested is not None else torch.get_num_threads()
    used = min(wanted, cores)
    note = None
    if used < wanted:
        what = f"threads {wanted}" if requested is not None else f"torch's default of {wanted} threads"
        note = f"{what} capped at the {cores} core{'s' if cores != 1 else ''} available"
    # The kernel's backend is chosen here, before torch's count is set: the C kernel changes no
    # thread setting; the numba fallback starts its pool on import, which would set torch's count
    # to the pool's size if kernels.numba_cpu._start_pool did not undo it.
    from .kernels import cpu

    cpu.backend()
    torch.set_num_threads(used)
    kernel = cpu.set_threads(used)  # the kernel asks for torch's count on each call; set it now too
    if kernel < used:  # numba only: NUMBA_NUM_THREADS set below the cores
        note = (note + "; " if note else "") + f"the dropout kernel uses {kernel} (NUMBA_NUM_THREADS)"
    return used, note
