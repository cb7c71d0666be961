"""Fashion-MNIST as it travels to a cluster's workers: the images as uint8, a quarter of float32's
bytes (about 55 MB for the whole set), turned back into the very floats the loader gave."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data import FashionMNIST
from .backends import BackendError

__all__ = ["pack", "unpack"]


def pack(data: FashionMNIST) -> dict[str, Any]:
    """``data`` as it goes into the object store: the images as uint8 (a quarter of float32's bytes).

    The images are stored as ``pixel / 255`` in float32, so ``round(x * 255)`` gives each pixel
    back exactly; :func:`unpack` divides again, as the loader did: the same floats, bit for bit.
    BackendError if ``data``'s images are not of that form (another dataset, changed in memory).

    Examples::

        >>> import torch
        >>> from droplab.data import FashionMNIST
        >>> x = torch.arange(256, dtype=torch.float32).reshape(2, 128) / 255
        >>> y = torch.tensor([0, 1])
        >>> d = FashionMNIST(x, y, x, y, x, y, source="made up", sha256={"a": "b"})
        >>> e = unpack(pack(d))
        >>> torch.equal(e.train_x, d.train_x), e.train_x.dtype, e.digest == d.digest
        (True, torch.float32, True)
    """
    packed: dict[str, Any] = {"source": data.source, "sha256": dict(data.sha256), "class_names": data.class_names}
    for split in ("train", "val", "test"):
        x = getattr(data, f"{split}_x")
        pixels = np.rint(x.numpy() * 255.0).clip(0, 255).astype(np.uint8)
        if not torch.equal(_to_float(pixels), x):
            raise BackendError(f"{split}_x", f"images of dtype {x.dtype}", "Fashion-MNIST's float32 pixel / 255 "
                               "(as droplab.data.load_fashion_mnist gives them)")  # fmt: skip
        packed[f"{split}_x"], packed[f"{split}_y"] = pixels, getattr(data, f"{split}_y").numpy().astype(np.uint8)
    return packed


def _to_float(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels.astype(np.float32) / 255.0)


def unpack(packed: dict[str, Any]) -> FashionMNIST:
    """The data :func:`pack` packed, as the loader gave it (float32 images, int64 labels)."""
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_x"] = _to_float(packed[f"{split}_x"])
        arrays[f"{split}_y"] = torch.from_numpy(packed[f"{split}_y"].astype(np.int64))
    return FashionMNIST(**arrays, source=packed["source"], sha256=dict(packed["sha256"]),
                        class_names=tuple(packed["class_names"]))  # fmt: skip
