"""Moved: the checkpoint's checks are in :mod:`droplab.train.state`. This alias stays until
``droplab.studies.records`` imports :data:`HISTORY_KEYS` from there."""

from .train.state import HISTORY_KEYS, check_state  # noqa: F401
