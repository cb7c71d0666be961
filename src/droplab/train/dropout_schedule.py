r"""Dropout schedules: every dropout site's rate as a function of the epoch and the step.

``TrainConfig.dropout_schedule`` names one; each scales every site's configured rate :math:`p`
by a factor :math:`f \in [0, 1]` (the site then drops at :math:`f\,p`):

- ``constant`` (the default): :math:`f = 1` all along;
- ``early:E``: :math:`f = 1` for epochs 1 to E, then 0 from epoch E + 1 (early dropout: Liu et al.,
  "Dropout Reduces Underfitting", ICML 2023);
- ``late:E``: :math:`f = 0` for epochs 1 to E, then 1 from epoch E + 1 (late dropout, and late
  stochastic depth, from the same paper);
- ``linear:E``: per optimizer step, :math:`f = \min(1, k / (E\,S))` for the step taken after
  :math:`k` steps, :math:`S` steps an epoch: 0 on the run's first step, rising linearly to the
  configured rates on the first step of epoch E + 1, constant after.

The sites (:func:`dropout_sites`): torch's dropout layers and their droplab drop-ins (``p``),
droplab's noise layers of strength ``p`` (Gaussian, stratified and no-rescale dropout, DropPath),
DropConnect's ``p``, additive noise's ``sigma`` (set from the rate it stands for, :math:`\sigma =
\sqrt{p/(1-p)}`), ``nn.MultiheadAttention``'s ``dropout``, and the rates a module names in its
``rate_attributes`` (``DropoutMLPScratch``'s two; the ViT's attention, projection and MLP rates).
So in an MLP: the hidden layers' dropout or noise and the input dropout; in the ViT: all four
sites, each DropPath at its own block's rate. Each site's configured rate is recorded on its
module the first time (:func:`apply_schedule`): factors never compound, and 1 restores it exactly.

Every site is off in eval mode whatever its rate, so a schedule changes training only (the
exception, ``NoRescaleDropout(test_scale=True)``, scales its eval output by :math:`1 - p`:
:class:`~droplab.train.TrainConfig` refuses a schedule with that noise). :func:`~droplab.train.fit`
sets the rates before each step from the epoch and the step, which a checkpoint holds, so a
resumed run trains at the rates of the uninterrupted one; the model it returns has its configured
rates back.

Examples::

    >>> from droplab.models import MLP
    >>> parse_schedule("early:2")
    ('early', 2)
    >>> [schedule_factor("early:2", epoch, step=0, steps_per_epoch=10) for epoch in (1, 2, 3)]
    [1.0, 1.0, 0.0]
    >>> [schedule_factor("linear:2", 1, step, steps_per_epoch=10) for step in (0, 5, 10, 20, 30)]
    [0.0, 0.25, 0.5, 1.0, 1.0]
    >>> model = MLP([8, 8], [0.5, 0.25], input_dropout=0.2)
    >>> [site.p for site, _ in dropout_sites(model)]
    [0.2, 0.5, 0.25]
    >>> apply_schedule(model, 0.5)
    >>> apply_schedule(model, 0.5)  # from the configured rates: no compounding
    >>> [site.p for site, _ in dropout_sites(model)]
    [0.1, 0.25, 0.125]
    >>> apply_schedule(model, 1.0)
    >>> [site.p for site, _ in dropout_sites(model)]
    [0.2, 0.5, 0.25]
"""

from __future__ import annotations

import math
import re

from torch import nn

from ..nn import _NoiseLayer
from ..noise import AdditiveNoise
from ..weights import DropConnectLinear

__all__ = ["SCHEDULE_KINDS", "parse_schedule", "is_schedule", "schedule_factor", "dropout_sites", "apply_schedule",
           "DropoutSchedule"]  # fmt: skip

SCHEDULE_KINDS = ("constant", "early", "late", "linear")
SCHEDULE_ACCEPTED = ("constant, or early:E, late:E or linear:E with E a whole number of epochs (early and late: "
                     "from 1 to epochs - 1; linear: from 1 to epochs)")  # fmt: skip
_FORM = re.compile(r"(early|late|linear):([1-9][0-9]{0,5})")  # E below 10^6, more than any run's epochs
_BASES = "_droplab_base_rates"  # a module's attribute: its sites' configured rates, recorded on the first call
_RATES = ((nn.modules.dropout._DropoutNd, ("p",)), (_NoiseLayer, ("p",)), (DropConnectLinear, ("p",)),
          (AdditiveNoise, ("sigma",)), (nn.MultiheadAttention, ("dropout",)))  # fmt: skip


def parse_schedule(schedule: str) -> tuple[str, int]:
    """The kind of ``schedule`` and its E (0 for ``constant``); ``ValueError`` for another text."""
    if schedule == "constant":
        return "constant", 0
    match = _FORM.fullmatch(schedule) if isinstance(schedule, str) else None
    if match is None:
        raise ValueError(f"dropout schedule {schedule!r} is not {SCHEDULE_ACCEPTED}")
    return match[1], int(match[2])


def is_schedule(schedule: object) -> bool:
    """Whether :func:`parse_schedule` reads ``schedule``."""
    return schedule == "constant" or (isinstance(schedule, str) and _FORM.fullmatch(schedule) is not None)


def schedule_factor(schedule: str, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The factor of the configured rates for the step of ``epoch`` (from 1) taken after ``step``
    steps of the run, ``steps_per_epoch`` steps an epoch (see the module's doc)."""
    return _factor(*parse_schedule(schedule), epoch, step, steps_per_epoch)


def _factor(kind: str, length: int, epoch: int, step: int, steps_per_epoch: int) -> float:
    if kind == "early":
        return 1.0 if epoch <= length else 0.0
    if kind == "late":
        return 0.0 if epoch <= length else 1.0
    if kind == "linear":
        return min(1.0, step / (length * steps_per_epoch))
    return 1.0


def dropout_sites(model: nn.Module) -> list[tuple[nn.Module, tuple[str, ...]]]:
    """Each module of ``model`` holding a dropout rate, and the names of its rate attributes."""
    sites = []
    for module in model.modules():
        names = next((names for kind, names in _RATES if isinstance(module, kind)), ())
        names += tuple(getattr(type(module), "rate_attributes", ()))
        if names:
            sites.append((module, names))
    return sites


def apply_schedule(model: nn.Module, factor: float) -> None:
    """Set every dropout site's rate of ``model`` to ``factor`` (in [0, 1]) times its configured
    rate: the one it had on the first call (recorded on its module), whatever calls came between."""
    _set_rates(dropout_sites(model), factor)


def _set_rates(sites: list[tuple[nn.Module, tuple[str, ...]]], factor: float) -> None:
    if not 0.0 <= factor <= 1.0:
        raise ValueError(f"a dropout schedule's factor must lie in [0, 1], got {factor}")
    for module, names in sites:
        bases = module.__dict__.setdefault(_BASES, {name: getattr(module, name) for name in names})
        for name in names:
            setattr(module, name, _scaled(bases[name], factor, isinstance(module, AdditiveNoise)))


def _scaled(base: float, factor: float, sigma: bool) -> float:
    """``factor`` times the rate ``base``; for additive noise (``sigma``), the sigma of ``factor``
    times the rate ``base`` stands for (``p = sigma**2 / (1 + sigma**2)``)."""
    if factor == 1.0 or not base:
        return base
    if not sigma:
        return factor * base
    p = factor * base**2 / (1.0 + base**2)
    return math.sqrt(p / (1.0 - p))


class DropoutSchedule:
    """A run's dropout schedule on its ``model``: :meth:`at` before each step sets the rates (when
    the factor changes), :meth:`restore` gives the configured rates back. ``constant`` touches nothing."""

    def __init__(self, schedule: str, model: nn.Module, steps_per_epoch: int) -> None:
        self.parsed, self.steps_per_epoch, self.factor = parse_schedule(schedule), steps_per_epoch, None
        self.sites = dropout_sites(model) if schedule != "constant" else []

    def at(self, epoch: int, step: int) -> None:
        """The rates of the step of ``epoch`` taken after ``step`` steps of the run."""
        if not self.sites:
            return
        factor = _factor(*self.parsed, epoch, step, self.steps_per_epoch)  # parsed once, not every step
        if factor != self.factor:
            _set_rates(self.sites, factor)
            self.factor = factor

    def restore(self) -> None:
        """The configured rates back (once training is done)."""
        if self.sites:
            _set_rates(self.sites, 1.0)
            self.factor = 1.0
