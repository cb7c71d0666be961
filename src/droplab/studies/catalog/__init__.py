"""The studies: the lecture's claims and d2l's seven exercises, one module each.

Each module declares its study (the configurations, the claims) beside the analysis that turns
the runs into verdict lines, tables and plots, and registers it in
:data:`droplab.studies.registry.STUDIES` where it is defined, with its ``order``: its place in
``droplab study list`` and ``all`` (the catalog's studies are numbered in tens, so that a new one
fits between two). A new study is one new module: importing this package imports every module
in it (:func:`discover`). What the studies share is in :mod:`.common`.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__ = ["SHARED", "discover"]

SHARED = frozenset({"common"})  # the modules that hold what the studies share, not a study


def discover() -> list[str]:
    """Import every module of this package but :data:`SHARED`, which registers its studies and probes.

    Their order in :data:`~droplab.studies.registry.STUDIES` is their ``order``, not the order of import.

    Returns:
        the modules' names, sorted.
    """
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in SHARED)
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


discover()
