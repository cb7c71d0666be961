"""Optional packages the tests need: skip where one cannot be imported, unless the run requires it.

``.ci/run`` sets ``DROPLAB_REQUIRE_<NAME>`` for the packages it installs, so there a failed import is a
defect, raised, not a skip.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def import_or_skip(name: str, install: str) -> ModuleType:
    """``name`` imported, or the calling test module skipped with how to get it (``install``)."""
    try:
        return importlib.import_module(name)
    except Exception as err:  # not installed, or broken
        if os.environ.get(f"DROPLAB_REQUIRE_{name.upper()}"):
            raise
        pytest.skip(f"{name} cannot be imported here ({err}); {install} runs these tests", allow_module_level=True)
