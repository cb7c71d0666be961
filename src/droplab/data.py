"""Fashion-MNIST from the four official IDX ``.gz`` files, verified and held in memory.

Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms
    H. Xiao, K. Rasul, R. Vollgraf, arXiv:1708.07747 (2017).

Where the files are looked for, in order:

1. ``data_dir`` (the CLI's ``--data-dir``), else the ``DROPLAB_DATA`` environment variable:
   when given, the files must be there;
2. the user cache, ``$XDG_CACHE_HOME/droplab/fashion-mnist`` (``~/.cache/droplab/fashion-mnist``);
3. ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist`` package);
4. otherwise the official files are downloaded into the user cache.

The SHA-256 of every decompressed file is checked against the official release; a download
that does not match is deleted, never kept.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import stat
import struct
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "IMAGE_SHAPE",
    "NUM_INPUTS",
    "FILES",
    "SHA256",
    "DataError",
    "DataNotFound",
    "SplitError",
    "FashionMNIST",
    "find_data_dir",
    "load_fashion_mnist",
    "read_idx",
    "parse_idx",
    "data_digest",
    "OFFICIAL_DIGEST",
]

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
NUM_CLASSES = len(CLASS_NAMES)  # 10: the models' outputs, one logit per class
IMAGE_SHAPE = (28, 28)  # an image's rows and columns
NUM_INPUTS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]  # 784: an image, flattened, as the models take it in

# name -> (file, number of dimensions)
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", 3),
    "train_labels": ("train-labels-idx1-ubyte.gz", 1),
    "test_images": ("t10k-images-idx3-ubyte.gz", 3),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", 1),
}

# SHA-256 of the decompressed files of the official release.
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}



def data_digest(sha256: dict[str, str]) -> str:
    """One SHA-256 for a data set from its files' SHA-256s (decompressed): the data's identity.

    It names what a run trained on: a run's record carries it, a study's runs are keyed by it,
    and a run is resumed only on data with the same digest.

    Examples::

        >>> data_digest(SHA256) == OFFICIAL_DIGEST
        True
        >>> data_digest({**SHA256, "t10k-labels-idx1-ubyte": "0" * 64}) == OFFICIAL_DIGEST
        False
    """
    text = "".join(f"{name} {sha256[name]}\n" for name in sorted(sha256))
    return hashlib.sha256(text.encode()).hexdigest()


OFFICIAL_DIGEST = data_digest(SHA256)  # the official release's

URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
MAX_PAYLOAD = 1 << 28  # no IDX file of this data set comes near 256 MiB; refuse larger headers


class DataError(ValueError):
    """A data file is missing, damaged, or not what it claims to be."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "droplab" / "fashion-mnist"


def has_all(directory: Path) -> bool:
    return all((directory / file).is_file() for file, _ in FILES.values())


class DataNotFound(DataError):
    """Fashion-MNIST is not in the directories ``looked`` in; ``reason`` says what was found there
    instead, or why the download failed. The message says how to get it."""

    def __init__(self, looked: list[Path], reason: str) -> None:
        super().__init__(looked, reason)
        self.looked, self.reason = looked, reason

    def __str__(self) -> str:
        return self.how_to_get("pass data_dir=DIR")

    def how_to_get(self, point: str) -> str:
        """The message, with ``point`` for how a caller points at a directory (the CLI: an option)."""
        return (
            "Fashion-MNIST not found (looked in: " + ", ".join(str(p) for p in self.looked) + "). "
            "Get it one of three ways:\n"
            "  1. Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist "
            f"(puts the files in {DEBIAN_DIR});\n"
            "  2. download the four .gz files from https://github.com/zalandoresearch/fashion-mnist "
            f"into {cache_dir()};\n"
            f"  3. {point} (or set DROPLAB_DATA=DIR) for a directory holding "
            + ", ".join(f for f, _ in FILES.values())
            + f".\n{self.reason}"
        )


def _what_is(path: Path) -> str:
    """Why ``path`` is not a data file: missing, or what it is instead of a regular file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"{path.name} is missing"
    except OSError as err:
        return f"{path.name} cannot be read ({err.strerror})"
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]  # fmt: skip
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return f"{path.name} is {kind}, not a regular file"


def find_data_dir(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The directory holding the four files, downloading them into the cache if needed."""
    explicit = data_dir if data_dir is not None else os.environ.get("DROPLAB_DATA") or None
    if explicit is not None:
        directory = Path(explicit).expanduser()
        try:
            os.stat(directory)
        except FileNotFoundError:
            pass
        except OSError as err:  # a name too long, a path through a file, a loop of links
            raise DataError(f"data directory {directory}: {err.strerror}") from None
        if has_all(directory):
            return directory
        if directory.exists() and not directory.is_dir():
            raise DataError(f"data directory {directory} is not a directory")
        problems = [_what_is(directory / f) for f, _ in FILES.values() if not (directory / f).is_file()]
        raise DataNotFound([directory], f"In {directory}: {'; '.join(problems)}.")
    looked = [cache_dir(), DEBIAN_DIR]
    for directory in looked:
        if has_all(directory):
            return directory
    if not download:
        raise DataNotFound(looked, "Automatic download is off.")
    try:
        _download(cache_dir())
    except (OSError, DataError) as err:
        raise DataNotFound(looked, f"Automatic download from {URL} failed: {err}") from None
    return cache_dir()


def _download(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for file, ndim in FILES.values():
        target = directory / file
        if target.is_file():
            continue
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=file + ".tmp-")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(URL + file, timeout=30) as r:
                while chunk := r.read(1 << 20):
                    out.write(chunk)
            read_idx(tmp, ndim, expected_sha256=SHA256[file[:-3]], name=file)  # verify first
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _check_header(head: bytes, ndim: int, name: str) -> tuple[tuple[int, ...], int]:
    """Shape and data size from the first ``4 + 4 * ndim`` bytes; :class:`DataError` if wrong."""
    if len(head) < 4:
        raise DataError(f"{name}: not an IDX file: {len(head)} bytes, shorter than the 4-byte magic")
    zero, dtype, dims = struct.unpack(">HBB", head[:4])
    if zero != 0 or dtype != 0x08:
        raise DataError(
            f"{name}: wrong magic number 0x{head[:4].hex()}: expected 0x000008{ndim:02x} (IDX of unsigned bytes)"
        )
    if dims != ndim:
        raise DataError(f"{name}: IDX file has {dims} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(head) < header:
        raise DataError(f"{name}: truncated header: {len(head)} bytes, expected at least {header}")
    shape = struct.unpack(f">{ndim}I", head[4:header])
    size = math.prod(shape)
    if size > MAX_PAYLOAD:
        raise DataError(f"{name}: header claims shape {shape} ({size} bytes), over the limit of {MAX_PAYLOAD}")
    return shape, size


def _check_size(shape: tuple[int, ...], size: int, held: int, name: str, exact: bool = True) -> None:
    """``held``: the data bytes found (``exact=False``: read up to ``size + 1``, so more means 'more')."""
    if held != size:
        what = "truncated" if held < size else "trailing bytes"
        found = held if exact or held < size else f"more than {size}"
        raise DataError(f"{name}: {what}: header claims shape {shape} = {size} bytes of data, file holds {found}")


def parse_idx(raw: bytes, ndim: int, name: str = "<bytes>") -> np.ndarray:
    """Parse decompressed IDX bytes of unsigned bytes with ``ndim`` dimensions.

    Raises :class:`DataError` naming ``name`` on a wrong magic number, wrong number of
    dimensions, or a size that does not match the header.
    """
    shape, size = _check_header(raw[: 4 + 4 * ndim], ndim, name)
    header = 4 + 4 * ndim
    _check_size(shape, size, len(raw) - header, name)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


_CHUNK = 1 << 16


def read_idx(
    path: str | os.PathLike, ndim: int, expected_sha256: str | None = None, name: str | None = None
) -> np.ndarray:
    """Read a gzip-compressed IDX file; optionally check the SHA-256 of its decompressed bytes.

    The header is checked before the data is read, and the data is read in chunks as far as
    the header says, plus one byte: memory grows with what the file really holds, never with
    what its header claims, and a gzip bomb stops at the claimed size. Every defect (wrong
    magic, wrong dimensions, a truncated or damaged stream, too much or too little data) is a
    :class:`DataError` naming the file.
    """
    return _read_idx(path, ndim, expected_sha256, name)[0]


def _read_idx(
    path: str | os.PathLike, ndim: int, expected_sha256: str | None = None, name: str | None = None
) -> tuple[np.ndarray, str]:
    """:func:`read_idx`, and the SHA-256 of the decompressed file."""
    name = name or str(path)
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(4 + 4 * ndim)
            shape, size = _check_header(head, ndim, name)
            digest.update(head)
            body = bytearray()
            while len(body) <= size and (chunk := f.read(min(_CHUNK, size + 1 - len(body)))):
                body += chunk
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a directory, not a data file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as err:
        raise DataError(f"{name}: damaged gzip stream ({err or type(err).__name__})") from None
    _check_size(shape, size, len(body), name, exact=False)
    digest.update(body)
    if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
        raise DataError(
            f"{name}: SHA-256 of the decompressed file is {digest.hexdigest()}, expected {expected_sha256} "
            "(the official Fashion-MNIST release); the file is damaged or not Fashion-MNIST"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(shape), digest.hexdigest()


class SplitError(DataError):
    """A validation split the data cannot give: ``field``, ``value`` and ``accepted`` say why."""

    def __init__(self, field: str, value, accepted: str) -> None:
        super().__init__(field, value, accepted)
        self.field, self.value, self.accepted = field, value, accepted

    def __str__(self) -> str:
        return f"{self.field} = {self.value!r} is invalid: expected {self.accepted}"


@dataclass
class FashionMNIST:
    """Fashion-MNIST in memory: images as float32 in [0, 1] of shape (N, 784), labels int64."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str
    sha256: dict[str, str] = field(default_factory=dict)  # decompressed file -> its SHA-256
    class_names: tuple[str, ...] = CLASS_NAMES

    @property
    def digest(self) -> str:
        """The identity of the data trained on (:func:`data_digest` of the files' SHA-256s)."""
        return data_digest(self.sha256)


def _load_pair(directory: Path, split: str, verify: bool) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    arrays, sha = [], {}
    for kind in ("images", "labels"):
        file, ndim = FILES[f"{split}_{kind}"]
        expected = SHA256[file[:-3]] if verify else None
        array, sha[file[:-3]] = _read_idx(directory / file, ndim, expected, name=str(directory / file))
        arrays.append(array)
    images, labels = arrays
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataError(
            f"{directory / FILES[split + '_images'][0]}: images of {images.shape[1]}x{images.shape[2]} pixels, "
            f"expected {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} (Fashion-MNIST's)"
        )
    if len(images) != len(labels):
        raise DataError(f"{directory}: {split} set has {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise DataError(f"{directory / FILES[split + '_images'][0]}: holds no images, expected at least 1")
    if labels.max() >= NUM_CLASSES:
        raise DataError(
            f"{directory / FILES[split + '_labels'][0]}: label {int(labels.max())} "
            f"outside 0..{NUM_CLASSES - 1}"
        )
    return images, labels, sha


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None,
    val_size: int = 5000,
    split_seed: int = 0,
    verify: bool = True,
    download: bool = True,
) -> FashionMNIST:
    """Load, verify and split Fashion-MNIST.

    Args:
        data_dir: directory holding the four ``.gz`` files (default: search, see module doc).
        val_size: images held out of the 60,000 training images for validation.
        split_seed: seed of the permutation choosing the validation images.
        verify: check the SHA-256 of each decompressed file against the official release.
        download: download into the user cache when no copy is found.
    """
    directory = find_data_dir(data_dir, download=download)
    train_images, train_labels, sha = _load_pair(directory, "train", verify)
    test_images, test_labels, sha_test = _load_pair(directory, "test", verify)
    if not 1 <= val_size < len(train_images):
        accepted = f"an integer from 1 to {len(train_images) - 1} (the data in {directory} has "
        raise SplitError("val_size", val_size, accepted + f"{len(train_images)} training images)")

    def to_x(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.reshape(len(a), -1).astype(np.float32) / 255.0)

    def to_y(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    x, y = to_x(train_images), to_y(train_labels)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(split_seed))
    val, train = perm[:val_size], perm[val_size:]
    return FashionMNIST(
        train_x=x[train], train_y=y[train], val_x=x[val], val_y=y[val],
        test_x=to_x(test_images), test_y=to_y(test_labels), source=str(directory), sha256={**sha, **sha_test},
    )  # fmt: skip
