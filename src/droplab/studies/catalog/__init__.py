"""The studies: the lecture's claims and d2l's seven exercises, one module each.

Each module declares its study (the configurations, the claims) beside the analysis that turns
the runs into verdict lines, tables and plots, and registers it in
:data:`droplab.studies.registry.STUDIES` where it is defined; a new study is one new module,
imported below. The imports' order is the studies' order (``droplab study list``, ``all``).
What the studies share is in :mod:`.common`.
"""

from __future__ import annotations

from ..registry import STUDIES

# The order of these imports is the order of the studies.
# isort: off
from . import (  # noqa: F401 (imported to register their studies)
    headline,
    layer_rates,
    long_training,
    activation_variance,
    ensemble,
    weight_decay,
    dropconnect,
    noise,
    data_size,
    normalization,
    regularizers,
    no_rescale,
)
# isort: on

__all__ = ["STUDIES"]
