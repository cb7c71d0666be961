"""Run directories and atomic writes: a result file is either whole or absent.

Every file is written to a temporary name in the same directory, flushed to disk, then
renamed over its target (``os.replace`` is atomic on POSIX). A run directory is claimed
when it is created; an existing, non-empty directory is never written into.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

__all__ = [
    "RunDirError",
    "atomic_write",
    "read_regular",
    "write_json",
    "write_text",
    "write_csv",
    "save_weights",
    "save_figure",
    "load_weights",
    "claim_dir",
    "lock_dir",
    "release_dir",
    "abandon_dir",
    "new_run_dir",
]

MARKER = ".droplab"
_held: dict[Path, int] = {}  # run directories this process holds: their locked marker's descriptor
_created: set[Path] = set()  # and those of them it created


class RunDirError(OSError):
    """An output directory cannot be used (exists, not writable)."""


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


def claim_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` for a run (or accept it if it exists and is empty); refuse otherwise.

    The claim is a ``.droplab`` marker created with ``O_EXCL``, so of two processes racing
    for the same directory exactly one wins; the winner holds a lock on the marker until
    :func:`release_dir` or its end (the kernel drops it even after a SIGKILL), which is how
    :func:`lock_dir` tells a live run from a dead one.
    """
    path = Path(path)
    try:
        return _claim(path)
    except RunDirError:
        raise
    except OSError as err:  # a name too long, a component that is a file, a loop of links...
        raise RunDirError(f"cannot use {path} as an output directory: {err.strerror or err}") from None


def _claim(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise RunDirError(f"output path {path} exists and is not a directory")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"cannot create output directory {path}: {err.strerror}") from None
    if created:
        _created.add(path.resolve())
    if any(p.name != MARKER for p in path.iterdir()):
        raise RunDirError(
            f"output directory {path} already holds results; droplab never overwrites a run "
            "(choose a new --out, or leave --out unset for a fresh timestamped directory)"
        )
    try:
        fd = os.open(path / MARKER, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    except FileExistsError:
        # only the marker: a run killed before it wrote anything, unless its process still holds it
        try:
            return lock_dir(path)
        except RunDirError:
            raise RunDirError(f"output directory {path} is already in use by another run") from None
    except OSError as err:
        raise RunDirError(f"output directory {path} is not writable: {err.strerror}") from None
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new file: nobody else can hold it
    os.write(fd, f"pid {os.getpid()} started {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
    _held[path.resolve()] = fd
    return path


def lock_dir(path: str | os.PathLike) -> Path:
    """Take over an existing run directory (to resume it); refuse while another process holds it."""
    path = Path(path)
    marker = path / MARKER
    try:
        fd = os.open(marker, os.O_RDWR)
    except FileNotFoundError:
        raise RunDirError(f"{path} is not a droplab run directory (no {MARKER} marker)") from None
    except OSError as err:
        raise RunDirError(f"cannot open {marker}: {err.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirError(f"{path} is in use by another droplab process; it cannot be resumed meanwhile") from None
    if not os.access(path, os.W_OK):
        os.close(fd)
        raise RunDirError(f"run directory {path} is not writable")
    for stale in path.glob(".*.tmp-*"):  # half-written files of a process killed mid-write
        stale.unlink()
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} resumed {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
    _held[path.resolve()] = fd
    return path


def release_dir(path: str | os.PathLike) -> None:
    """Give up this process's lock on a run directory (claimed or locked)."""
    fd = _held.pop(Path(path).resolve(), None)
    _created.discard(Path(path).resolve())
    if fd is not None:
        os.close(fd)


def abandon_dir(path: str | os.PathLike, files: Iterable[str] = ()) -> bool:
    """Undo a claim that produced nothing worth keeping: when ``path`` holds only its marker and
    ``files``, remove them (and the directory, if the claim created it) and release it.
    Returns whether it did; a directory holding anything else is left as it is, released."""
    path = Path(path)
    keep = {MARKER, *files}
    try:
        if any(p.name not in keep for p in path.iterdir()):
            return False
        created = path.resolve() in _created
        for name in files:
            (path / name).unlink(missing_ok=True)
        (path / MARKER).unlink(missing_ok=True)
        if created:
            path.rmdir()
        return True
    finally:
        release_dir(path)


def new_run_dir(root: str | os.PathLike, name: str) -> Path:
    """Claim a fresh ``root/<name>-<YYYYmmdd-HHMMSS>`` (suffixed ``-2``, ``-3``… if taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}-{stamp}"
    for i in range(1, 1000):
        candidate = base if i == 1 else base.with_name(f"{base.name}-{i}")
        try:
            if candidate.exists():
                continue
        except OSError as err:
            raise RunDirError(f"cannot use {candidate} as an output directory: {err.strerror or err}") from None
        try:
            return claim_dir(candidate)
        except RunDirError:
            if not os.access(candidate.parent, os.W_OK):
                raise
            continue
    raise RunDirError(f"could not find a free run directory under {root}")
