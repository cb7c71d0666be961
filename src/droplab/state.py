"""Moved: a checkpoint's checks are in :mod:`droplab.train.checks`, a metrics row's keys in
:mod:`droplab.train.metrics`. This alias stays until ``droplab.studies.records`` imports
``HISTORY_KEYS`` from there."""

from .train.metrics import HISTORY_KEYS  # noqa: F401
