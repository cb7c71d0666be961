"""Every ``Examples::`` block in droplab runs as a doctest."""

import doctest
import importlib
import pkgutil

import pytest

import droplab

MODULES = sorted(m.name for m in pkgutil.walk_packages(droplab.__path__, "droplab.") if not m.name.endswith("__main__"))


def _has_examples(name: str) -> bool:
    try:
        module = importlib.import_module(name)
    except ImportError:  # an optional dependency (the CUDA kernel's triton) absent here
        return False
    return "Examples::" in (importlib.util.find_spec(name).loader.get_source(name) or "") and module is not None


WITH_EXAMPLES = [m for m in MODULES if _has_examples(m)]


def test_the_modules_with_examples_are_found():
    assert {"droplab.functional", "droplab.data", "droplab.studies.plan"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has an Examples:: block but no doctest ran"
    assert result.failed == 0
