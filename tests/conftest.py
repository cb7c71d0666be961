"""Shared fixtures: small Fashion-MNIST-shaped IDX files generated on the fly."""

from __future__ import annotations

import gzip
import signal
import struct
from pathlib import Path

import numpy as np
import pytest

from droplab.data import FILES


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian sizes, data."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_gz(path: Path, raw: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(raw)
    return path


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable toy images: class c lights up rows 2c..2c+2, on top of noise."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, c in enumerate(labels):
        images[i, 2 * c + 4 : 2 * c + 7, 4:24] = 220
    return images, labels


def write_dataset(directory: Path, n_train: int = 600, n_test: int = 200) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = make_images(n, seed)
        write_gz(directory / FILES[f"{split}_images"][0], idx_bytes(images))
        write_gz(directory / FILES[f"{split}_labels"][0], idx_bytes(labels))
    return directory


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """600 training and 200 test images in the official file names (not the official bytes)."""
    return write_dataset(tmp_path / "tiny-fmnist")


@pytest.fixture(scope="session")
def _kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build of the C dropout kernel for the session (tests of its cache use their own directories)."""
    return tmp_path_factory.mktemp("droplab-kernel-cache")


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, _kernel_cache: Path) -> None:
    """No test sees the user's DROPLAB_DATA or cache."""
    monkeypatch.delenv("DROPLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("DROPLAB_CACHE_DIR", str(_kernel_cache))


@pytest.fixture(scope="session")
def quick_study(tmp_path_factory: pytest.TempPathFactory):
    """``quick_study(name)``: the study.json of a quick run of study ``name`` on tiny data (3 seeds;
    once per session; one store, so that runs the studies share train once)."""
    import json

    from droplab.studies import STUDIES, run_study

    root, done = tmp_path_factory.mktemp("quick-studies"), {}
    data = write_dataset(root / "tiny", n_test=200)

    def get(name: str) -> dict:
        if name not in done:
            with pytest.MonkeyPatch.context() as mp:
                mp.delenv("DROPLAB_DATA", raising=False)
                mp.setenv("XDG_CACHE_HOME", str(root / "xdg-cache"))
                run_study(STUDIES[name], data, root / name, store=root / "runs", seeds=3, quick=True, verify=False,
                          val_size=100, log=lambda line: None)  # fmt: skip
            done[name] = json.loads((root / name / "study.json").read_text())
        return done[name]

    get.data, get.store = data, root / "runs"
    return get


@pytest.fixture
def own_handlers():
    """Whatever a test leaves installed, this process gets its SIGINT/SIGTERM handlers back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)
