"""Every ``Examples::`` block in droplab is a doctest that pytest runs.

pytest collects them itself (pyproject.toml: ``--doctest-modules`` over ``src``), so ``make
test``, CI and a plain ``pytest`` run every example once; ``pytest --doctest-modules src`` runs
them alone. These tests check that set-up, not the examples: that it stays in place, that no
``Examples::`` block is prose that never runs, and that collecting every module does not need
the optional packages.
"""

import doctest
import importlib
import importlib.util
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import droplab

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(m.name for m in pkgutil.walk_packages(droplab.__path__, "droplab.") if not m.name.endswith("__main__"))


def _source(name: str) -> str:
    spec = importlib.util.find_spec(name)
    return spec.loader.get_source(name) or ""


WITH_EXAMPLES = [m for m in MODULES if "Examples::" in _source(m)]


def test_pytest_collects_the_examples_of_src(pytestconfig):
    assert pytestconfig.inipath == ROOT / "pyproject.toml"
    assert {"tests", "src"} <= set(pytestconfig.getini("testpaths"))
    assert "--doctest-modules" in pytestconfig.getini("addopts")


def test_the_modules_with_examples_are_found():
    expected = {"droplab.functional", "droplab.nn", "droplab.noise", "droplab.weights", "droplab.data"}
    assert expected <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_every_examples_block_is_a_doctest(name):
    """Each ``Examples::`` sits in a docstring doctest finds, and holds ``>>>`` lines."""
    found = doctest.DocTestFinder(exclude_empty=False).find(importlib.import_module(name))
    # (a graph break of torch.compile inside a function leaves a resume function with its docstring in the module)
    with_examples = [t for t in found if "Examples::" in (t.docstring or "") and "__resume_at_" not in t.name]
    assert sum(t.docstring.count("Examples::") for t in with_examples) == _source(name).count("Examples::")
    assert all(t.examples for t in with_examples), [t.name for t in with_examples if not t.examples]


def test_every_module_imports_without_the_optional_packages():
    """Doctest collection imports every module: none may need Triton (the CUDA kernel's)."""
    script = (
        "import importlib, sys; sys.modules['triton'] = None\n"  # `import triton` now raises ImportError
        f"for name in {MODULES!r}: importlib.import_module(name)\n"
    )
    path = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
