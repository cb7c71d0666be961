import gzip
import hashlib
import struct

import numpy as np
import pytest
from conftest import idx_bytes, make_images, write_dataset, write_gz

from droplab import data
from droplab.data import FILES, DataError, find_data_dir, load_fashion_mnist, parse_idx, read_idx


def test_parse_generated_files_roundtrip(tmp_path):
    images, labels = make_images(30, seed=0)
    img = read_idx(write_gz(tmp_path / "i.gz", idx_bytes(images)), 3)
    lab = read_idx(write_gz(tmp_path / "l.gz", idx_bytes(labels)), 1)
    assert np.array_equal(img, images) and np.array_equal(lab, labels)


def test_sha256_checked_on_decompressed_bytes(tmp_path):
    raw = idx_bytes(make_images(5, seed=0)[1])
    path = write_gz(tmp_path / "l.gz", raw)
    assert read_idx(path, 1, expected_sha256=hashlib.sha256(raw).hexdigest()).shape == (5,)
    with pytest.raises(DataError, match=r"l\.gz: SHA-256 of the decompressed file is [0-9a-f]{64}, expected 0{64}"):
        read_idx(path, 1, expected_sha256="0" * 64)


@pytest.mark.parametrize(
    "raw, ndim, message",
    [
        (b"", 1, "shorter than the 4-byte magic"),
        (b"\x00\x00\x08", 1, "shorter than the 4-byte magic"),
        (struct.pack(">HBBI", 0, 0x0D, 1, 3) + b"abc", 1, "wrong magic number 0x00000d01: expected 0x00000801"),
        (struct.pack(">HBBI", 1, 0x08, 1, 3) + b"abc", 1, "wrong magic number"),
        (struct.pack(">HBBI", 0, 0x08, 1, 3) + b"abc", 3, "has 1 dimensions, expected 3"),
        (struct.pack(">HBB", 0, 0x08, 3) + b"\x00\x00", 3, "truncated header"),
        (
            struct.pack(">HBBI", 0, 0x08, 1, 10) + b"abc", 1,
            r"truncated: header claims shape \(10,\) = 10 bytes of data, file holds 3",
        ),
        (struct.pack(">HBBI", 0, 0x08, 1, 2) + b"abc", 1, "trailing bytes"),
        (struct.pack(">HBB3I", 0, 0x08, 3, 60000, 60000, 60000), 3, "over the limit"),
    ],
)
def test_bad_idx_bytes(raw, ndim, message):
    with pytest.raises(DataError, match=message):
        parse_idx(raw, ndim, name="f")


def test_huge_header_never_allocates(tmp_path):
    # a header claiming 4 billion items in a file of 16 bytes is refused from the header
    raw = struct.pack(">HBBI", 0, 0x08, 1, 0xFFFFFFFF) + b"x" * 8
    with pytest.raises(DataError, match=r"claims shape \(4294967295,\).*over the limit"):
        read_idx(write_gz(tmp_path / "l.gz", raw), 1)


def test_truncated_gzip_stream_names_the_file(tmp_path):
    whole = gzip.compress(idx_bytes(make_images(50, seed=0)[0]))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: damaged gzip stream"):
        read_idx(path, 3)


def test_not_gzip_at_all(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError, match=r"x\.gz: damaged gzip stream"):
        read_idx(path, 1)


def test_corrupted_gzip_body(tmp_path):
    whole = bytearray(gzip.compress(idx_bytes(make_images(50, seed=0)[0])))
    whole[len(whole) // 2] ^= 0xFF
    path = tmp_path / "x.gz"
    path.write_bytes(bytes(whole))
    with pytest.raises(DataError, match="x.gz"):
        read_idx(path, 3)


def test_gzip_bomb_stops_at_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_PAYLOAD", 1000)
    path = write_gz(tmp_path / "bomb.gz", struct.pack(">HBBI", 0, 0x08, 1, 10**6) + bytes(10**6))
    with pytest.raises(DataError, match="over the limit"):
        read_idx(path, 1)


def test_labels_outside_range_and_count_mismatch(tmp_path):
    d = write_dataset(tmp_path / "d", n_train=40, n_test=20)
    bad = np.full(40, 10, dtype=np.uint8)
    write_gz(d / "train-labels-idx1-ubyte.gz", idx_bytes(bad))
    with pytest.raises(DataError, match="label 10 outside 0..9"):
        load_fashion_mnist(d, val_size=5, verify=False)
    write_gz(d / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(39, dtype=np.uint8)))
    with pytest.raises(DataError, match="40 images but 39 labels"):
        load_fashion_mnist(d, val_size=5, verify=False)


def test_load_split_shapes_scaling_and_seeded(tiny_dir):
    a = load_fashion_mnist(tiny_dir, val_size=100, verify=False)
    assert a.train_x.shape == (500, 784) and a.val_x.shape == (100, 784)
    assert a.test_x.shape == (200, 784) and a.test_y.dtype.is_floating_point is False
    assert 0.0 <= float(a.train_x.min()) and float(a.train_x.max()) <= 1.0
    b = load_fashion_mnist(tiny_dir, val_size=100, verify=False)
    assert np.array_equal(a.val_y.numpy(), b.val_y.numpy())
    c = load_fashion_mnist(tiny_dir, val_size=100, split_seed=1, verify=False)
    assert not np.array_equal(a.val_x.numpy(), c.val_x.numpy())
    assert len(a.class_names) == 10 and a.class_names[9] == "Ankle boot"


def test_verification_on_by_default_rejects_non_official(tiny_dir):
    with pytest.raises(DataError, match="SHA-256"):
        load_fashion_mnist(tiny_dir)


@pytest.mark.parametrize("val_size", [0, 600, -3])
def test_bad_val_size(tiny_dir, val_size):
    with pytest.raises(DataError, match=f"val_size = {val_size} is invalid: expected an integer from 1 to 599"):
        load_fashion_mnist(tiny_dir, val_size=val_size, verify=False)


def test_explicit_dir_must_hold_the_files(tmp_path):
    with pytest.raises(DataError) as err:
        find_data_dir(tmp_path / "nowhere")
    text = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in text
    assert "data_dir=DIR" in text and "DROPLAB_DATA" in text and "github.com/zalandoresearch" in text
    assert "train-images-idx3-ubyte.gz" in text
    assert "--" not in text  # the library names no option: the command line says its own (droplab.cli)
    assert err.value.looked == [tmp_path / "nowhere"] and "train-images-idx3-ubyte.gz is missing" in err.value.reason
    assert "3. pass --data-dir DIR (or set DROPLAB_DATA=DIR)" in err.value.how_to_get("pass --data-dir DIR")


def test_search_order_env_then_cache_then_debian(tmp_path, monkeypatch):
    env_dir = write_dataset(tmp_path / "env", 20, 10)
    monkeypatch.setenv("DROPLAB_DATA", str(env_dir))
    assert find_data_dir() == env_dir
    monkeypatch.delenv("DROPLAB_DATA")
    cache = write_dataset(tmp_path / "xdg-cache" / "droplab" / "fashion-mnist", 20, 10)
    assert find_data_dir() == cache
    for f in cache.iterdir():
        f.unlink()
    monkeypatch.setattr(data, "DEBIAN_DIR", env_dir)
    assert find_data_dir() == env_dir


def test_failed_download_keeps_nothing_and_says_how_to_get_data(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    served = gzip.compress(idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8)))  # valid IDX, not Fashion-MNIST

    class FakeResponse:
        def __init__(self):
            self.chunks = [served]

        def read(self, n):
            return self.chunks.pop() if self.chunks else b""

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: FakeResponse())
    with pytest.raises(DataError, match="Automatic download from .* failed: .*SHA-256 of the decompressed file"):
        find_data_dir()
    cache = tmp_path / "xdg-cache" / "droplab" / "fashion-mnist"
    assert list(cache.iterdir()) == []  # the bad download was deleted


def test_no_download_when_disabled(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    with pytest.raises(DataError, match="download is off"):
        find_data_dir(download=False)


# --- provenance and inconsistent data ---------------------------------------------------


def test_digest_names_the_data_trained_on(tiny_dir, tmp_path):
    from conftest import write_dataset

    from droplab.data import OFFICIAL_DIGEST

    a = load_fashion_mnist(tiny_dir, val_size=100, verify=False)
    assert set(a.sha256) == {f[:-3] for f, _ in FILES.values()}
    assert len(a.digest) == 64 and a.digest != OFFICIAL_DIGEST
    assert load_fashion_mnist(tiny_dir, val_size=100, verify=False).digest == a.digest  # a function of the bytes
    other = write_dataset(tmp_path / "other", n_train=600, n_test=201)  # one more test image
    assert load_fashion_mnist(other, val_size=100, verify=False).digest != a.digest


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_data_path_that_is_not_a_file_is_named_as_such(tiny_dir, kind):
    import os

    target = tiny_dir / FILES["test_labels"][0]
    target.unlink()
    target.mkdir() if kind == "directory" else os.mkfifo(target)
    what = "directory" if kind == "directory" else "FIFO"
    with pytest.raises(DataError, match=f"t10k-labels-idx1-ubyte.gz is a {what}, not a regular file") as err:
        find_data_dir(tiny_dir)
    assert "missing" not in str(err.value).lower()


def test_images_of_another_size_are_refused_before_training(tmp_path):
    from conftest import idx_bytes, write_dataset, write_gz

    d = write_dataset(tmp_path / "d")
    write_gz(d / FILES["test_images"][0], idx_bytes(np.zeros((200, 27, 28), np.uint8)))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: images of 27x28 pixels, expected 28x28"):
        load_fashion_mnist(d, val_size=100, verify=False)


def test_zero_test_images_are_refused(tmp_path):
    from conftest import idx_bytes, write_dataset, write_gz

    d = write_dataset(tmp_path / "d")
    write_gz(d / FILES["test_images"][0], idx_bytes(np.zeros((0, 28, 28), np.uint8)))
    write_gz(d / FILES["test_labels"][0], idx_bytes(np.zeros((0,), np.uint8)))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: holds no images, expected at least 1"):
        load_fashion_mnist(d, val_size=100, verify=False)


def test_the_data_shapes_are_defined_once_in_data_and_imported_from_it():
    """784 inputs (an image flattened) and 10 classes are data's; the modules that size a model
    import them from it, and memory.py, below the models, imports nothing from models.py."""
    import ast
    import math
    from pathlib import Path

    import droplab

    assert data.NUM_INPUTS == math.prod(data.IMAGE_SHAPE) == 784
    assert data.NUM_CLASSES == len(data.CLASS_NAMES) == 10
    root = Path(droplab.__file__).parent
    defined, imported = [], {}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            names = {t.id for t in targets if isinstance(t, ast.Name)} & {"NUM_INPUTS", "NUM_OUTPUTS", "NUM_CLASSES",
                                                                         "IMAGE_SHAPE"}  # fmt: skip
            defined += [f"{path.relative_to(root)}: {n}" for n in sorted(names)]
            if isinstance(node, ast.ImportFrom):
                imported.setdefault(str(path.relative_to(root)), set()).add(node.module)
    assert sorted(defined) == ["data.py: IMAGE_SHAPE", "data.py: NUM_CLASSES", "data.py: NUM_INPUTS"]
    for module in ("models.py", "memory.py", "train/resources.py", "train/timing.py"):
        assert "data" in imported[module], module
    assert "models" not in imported["memory.py"]
