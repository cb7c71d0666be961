"""On the real Fashion-MNIST, when it is installed (CI installs Debian's dataset-fashion-mnist)."""

import os
from pathlib import Path

import pytest

from droplab import data
from droplab.train import TrainConfig, fit

# Read at import, before the autouse fixture hides the user's environment from other tests.
CANDIDATES = [Path(p) for p in (os.environ.get("DROPLAB_DATA"),) if p] + [data.cache_dir(), data.DEBIAN_DIR]
REAL = next((d for d in CANDIDATES if data.has_all(d)), None)


@pytest.fixture(scope="module")
def fmnist():
    if REAL is None:
        if os.environ.get("DROPLAB_REQUIRE_DATA"):  # set by .ci/run: CI must not skip these
            pytest.fail("DROPLAB_REQUIRE_DATA is set but Fashion-MNIST was not found")
        pytest.skip("real Fashion-MNIST absent (apt-get install dataset-fashion-mnist, or see README)")
    return data.load_fashion_mnist(REAL)  # verifies the SHA-256 of all four files


def test_official_files_verify_and_split(fmnist):
    assert fmnist.train_x.shape == (55000, 784) and fmnist.val_x.shape == (5000, 784)
    assert fmnist.test_x.shape == (10000, 784)
    assert sorted(fmnist.test_y.bincount().tolist()) == [1000] * 10
    assert fmnist.digest == data.OFFICIAL_DIGEST and fmnist.sha256 == data.SHA256


def test_lecture_model_two_epochs_reaches_75_percent(fmnist):
    res = fit(TrainConfig(model="scratch", epochs=2), fmnist)
    assert res.summary["val_acc"] >= 0.75, res.history


def test_the_readme_python_example_runs(fmnist, monkeypatch):
    """The README's Python block, as a reader pastes it (it finds the data as droplab does)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("DROPLAB_DATA", str(REAL))
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert 0.5 < namespace["result"].summary["val_acc"] <= 1.0
