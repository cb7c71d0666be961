"""Checkpoints: everything a run needs to go on bit for bit, in one file written atomically.

A checkpoint holds the model's and the optimizer's (and the schedule's) state, where the run
stands (epoch, step, the epoch's minibatch order and running loss), every random generator
involved — torch's global one (initial weights; droplab's dropout draws its per-call mask
seeds from it), the shuffling, subset and augmentation generators, numpy's and Python's —,
the configuration and the metrics so far.

The file is one header line, ``droplab-checkpoint 1 <SHA-256 of the payload>``, then the
payload written by :func:`torch.save`. Loading checks the digest before parsing and parses
with ``torch.load(weights_only=True)``: a damaged file is refused with a clear error, and a
checkpoint can never run code.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write, read_regular

__all__ = ["CheckpointError", "save", "load", "rng_state", "set_rng_state", "FILENAME"]

FILENAME = "checkpoint.pt"
MAGIC = b"droplab-checkpoint"
VERSION = 1
_MAX_HEADER = 128
MAX_BYTES = 1 << 36  # 64 GiB: far over any MLP's; a regular file is what matters


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, not a checkpoint, or for another run."""


def rng_state() -> dict[str, Any]:
    """The global generators' states, as tensors and plain values (loadable with weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(words), py_gauss],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, words, py_gauss = state["python"]
    random.setstate((version, tuple(words), py_gauss))


def save(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: the previous checkpoint stays until the new one is whole."""
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    header = b"%s %d %s\n" % (MAGIC, VERSION, hashlib.sha256(payload).hexdigest().encode())

    def write(f) -> None:
        f.write(header)
        f.write(payload)

    return atomic_write(path, write)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save`; :class:`CheckpointError` if it is not one or is damaged."""
    path = Path(path)
    try:
        raw = read_regular(path, MAX_BYTES, "a checkpoint file")
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror}") from None
    except ValueError as err:  # a FIFO, a device: never read (it could block, or never end)
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None
    end = raw.find(b"\n", 0, _MAX_HEADER)
    parts = raw[:end].split(b" ") if end > 0 else []
    if len(parts) != 3 or parts[0] != MAGIC:
        raise CheckpointError(f"{path} is not a droplab checkpoint (no '{MAGIC.decode()}' header)")
    if parts[1] != str(VERSION).encode():
        raise CheckpointError(f"{path}: checkpoint format {parts[1].decode(errors='replace')}, expected {VERSION}")
    payload = raw[end + 1 :]
    digest = hashlib.sha256(payload).hexdigest()
    if digest.encode() != parts[2]:
        said = parts[2].decode(errors="replace")
        raise CheckpointError(f"{path} is damaged: SHA-256 of its contents is {digest}, the header says {said}")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests loading with weights_only=False: the one thing not to do
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path}: cannot be read safely: it holds objects other than tensors and plain values{what}, which "
            "could run code when loaded; droplab never writes such a file: do not load it"
        ) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError) as err:
        first = str(err).splitlines()[0][:200] if str(err) else ""
        raise CheckpointError(f"{path}: cannot be read safely ({type(err).__name__}: {first})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, expected a checkpoint's dict")
    return state
