"""Studies: many training configurations over seeds, their runs stored and shared, their claims checked.

- :mod:`.registry`: what a study is (:class:`Variant`, :class:`Study`, :class:`Analysis`,
  :class:`Probe`) and the registries :data:`STUDIES` and :data:`PROBES`, with the decorators
  :func:`study` and :func:`probe` that fill them where each study is defined;
- :mod:`.catalog`: the studies, one module each (importing this package imports them, which
  registers them and their probes, in the catalog's order);
- :mod:`.engine`: :func:`run_study`, its stages in order; :mod:`.jobs` (one job and its key),
  :mod:`.store` (the store of runs), :mod:`.records` (a stored record's checks), :mod:`.plan`
  (how many runs, how long), :mod:`.backends` (where jobs run, how they stop), :mod:`.results`
  (the finished runs, as an analysis reads them).
"""

from __future__ import annotations

from . import catalog  # noqa: F401 (registers the studies and their probes)
from .engine import StudyArgumentError, StudyError, run_study
from .registry import PROBES, STUDIES, Analysis, Probe, Study, Variant, probe, register, study
from .results import Results

__all__ = [
    "STUDIES", "PROBES", "Study", "Variant", "Analysis", "Probe", "Results", "study", "probe", "register",
    "run_study", "StudyError", "StudyArgumentError",
]  # fmt: skip
