"""Atomic writes: a result file is either whole or absent; and reading files others may have written.

Every file is written to a temporary name in the same directory, flushed to disk, then renamed
over its target (``os.replace`` is atomic on POSIX): a crash or a kill leaves the old file or
the new one, never half of one. :func:`read_regular` reads a file without trusting it: never
blocking on a FIFO or a device, never past a cap.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

__all__ = ["atomic_write", "read_regular", "write_text", "write_json", "write_csv", "save_weights", "save_figure",
           "load_weights"]  # fmt: skip


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's files are 0600


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a temporary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_regular(path: str | os.PathLike, cap: int, what: str) -> bytes:
    """The bytes of the regular file ``path`` (at most ``cap``), never blocking on a FIFO or device.

    For files others may have written: a FIFO, a device (a link to ``/dev/zero``) or a file over
    ``cap`` bytes is refused before it is read. Raises ``OSError`` when it cannot be opened and
    ``ValueError`` with the reason when it is not a regular file or is over ``cap`` bytes.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"not a regular file; expected {what}")
    if st.st_size > cap:
        raise ValueError(f"over the cap of {_size(cap)} ({st.st_size} bytes)")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the stat above
            raise ValueError(f"not a regular file; expected {what}")
        chunks, size = [], 0
        while size <= cap and (chunk := f.read(min(1 << 24, cap + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    if len(data) > cap:  # grew since the stat above
        raise ValueError(f"over the cap of {_size(cap)}")
    return data


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN/inf; null says "not measured"
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


def write_csv(path: str | os.PathLike, fieldnames: list[str], rows: Iterable[Mapping]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return write_text(path, buf.getvalue())


def save_weights(path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor]) -> Path:
    return atomic_write(path, lambda f: torch.save(dict(state_dict), f))


def save_figure(path: str | os.PathLike, fig, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    finally:
        plt.close(fig)


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load weights saved by :func:`save_weights`; never executes code from the file."""
    return torch.load(path, map_location="cpu", weights_only=True)
