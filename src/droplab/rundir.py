"""Output directories: claimed before anything is written into them, held by one process at a time.

An output directory (a run's, a study's) is claimed before anything is written into it
(:func:`claim_dir`) and held by one process at a time; an existing directory holding other files
is never written into. Why one cannot be used is a :class:`RunDirError` subclass carrying the
directory. The files written into them are written atomically, with :mod:`droplab.atomic`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .atomic import read_regular

__all__ = [
    "RunDirError",
    "DirectoryUnusable",
    "DirectoryNotEmpty",
    "DirectoryOwned",
    "DirectoryBusy",
    "NotADroplabDirectory",
    "RunFinished",
    "NoSpace",
    "claim_dir",
    "lock_dir",
    "release_dir",
    "claimed",
    "claim_new",
    "held",
    "abandon_dir",
    "new_run_dir",
]

MARKER = ".droplab"
MARKERS = {"run": MARKER, "study": ".droplab-study"}  # the marker that claims a directory, by what it holds
_held: dict[Path, int] = {}  # run directories this process holds: their locked marker's descriptor
_created: set[Path] = set()  # and those of them it created


class RunDirError(OSError):
    """An output directory that cannot be used. The classes below say why, with the directory (and
    whatever else their message needs) as their arguments, which are their ``args`` (so that they
    pickle: a worker's error crosses to its parent), and build their message from them."""

    def __init__(self, *args) -> None:
        super().__init__()  # not OSError's (errno, strerror, filename): the arguments are the subclass's own
        self.args = args


class DirectoryUnusable(RunDirError):
    """``directory`` cannot serve as ``role``: ``reason`` (the system's refusal, or what it is)."""

    def __init__(self, directory: str | os.PathLike, reason: str, role: str = "an output directory") -> None:
        super().__init__(directory, reason, role)
        self.directory, self.reason, self.role = Path(directory), reason, role

    def __str__(self) -> str:
        return f"cannot use {self.directory} as {self.role}: {self.reason}"


class DirectoryNotEmpty(RunDirError):
    """``directory`` holds files and no claim of this ``kind`` ("run", "study"): droplab never writes among them."""

    def __init__(self, directory: str | os.PathLike, kind: str = "run") -> None:
        super().__init__(directory, kind)
        self.directory, self.kind = Path(directory), kind

    def __str__(self) -> str:
        return f"output directory {self.directory} already holds results; droplab never overwrites a {self.kind}"


class DirectoryOwned(RunDirError):
    """``directory`` is claimed by ``owner``, another ``kind`` than ``wanted`` (a study's directory)."""

    def __init__(self, directory: str | os.PathLike, owner: str, wanted: str, kind: str = "study") -> None:
        super().__init__(directory, owner, wanted, kind)
        self.directory, self.owner, self.wanted, self.kind = Path(directory), owner, wanted, kind

    def __str__(self) -> str:
        return f"{self.directory} holds results of {self.kind} {self.owner!r}, not {self.wanted!r}"


class DirectoryBusy(RunDirError):
    """Another live droplab process holds ``directory`` (its lock; the kernel drops it when the process ends)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        super().__init__(directory)
        self.directory = Path(directory)

    def __str__(self) -> str:
        return f"{self.directory} is in use by another droplab process"


class NotADroplabDirectory(RunDirError):
    """``directory`` holds no marker of a ``kind`` of droplab output ("run", "study"): nothing to go on with."""

    def __init__(self, directory: str | os.PathLike, kind: str = "run") -> None:
        super().__init__(directory, kind)
        self.directory, self.kind = Path(directory), kind

    def __str__(self) -> str:
        return f"{self.directory} is not a droplab {self.kind} directory (no {MARKERS[self.kind]} marker)"


class RunFinished(RunDirError):
    """The run in ``directory`` has finished: there is nothing to go on with."""

    def __init__(self, directory: str | os.PathLike) -> None:
        super().__init__(directory)
        self.directory = Path(directory)

    def __str__(self) -> str:
        return f"{self.directory} holds a finished run: nothing to resume"


class NoSpace(RunDirError):
    """``directory``'s disk has ``free`` bytes; what is to be written there needs about ``need``."""

    def __init__(self, directory: str | os.PathLike, free: int, need: int) -> None:
        super().__init__(directory, free, need)
        self.directory, self.free, self.need = Path(directory), free, need

    def __str__(self) -> str:
        return (f"not enough space in {self.directory}: {self.free / 2**20:.1f} MiB free, this run's checkpoints "
                f"and results need about {self.need / 2**20:.1f} MiB")


def claim_dir(path: str | os.PathLike, kind: str = "run", owner: str | None = None) -> Path:
    """Claim ``path`` as the output directory of a ``kind`` of work; refuse one in use or holding other files.

    A run's directory (``kind="run"``) is claimed only while it is new or empty: a run never writes
    among files it did not write. A study's (``kind="study"``) is claimed by its ``owner``, the
    study's name, which its marker keeps: the same study claims it again whatever it holds, so that
    a stopped study goes on in it; another study is refused.

    The claim is a marker (``.droplab``, ``.droplab-study``) created with ``O_EXCL``, so of two
    processes racing for the same directory exactly one wins; the winner holds a lock on the marker
    until :func:`release_dir` or its end (the kernel drops it even after a SIGKILL), which is how a
    live claim is told from a dead one.

    Args:
        path: the directory; created, with its parents, if it does not exist.
        kind: ``"run"`` or ``"study"``.
        owner: the study's name (a study's directory only).

    Returns:
        ``path``, held by this process.

    Raises:
        DirectoryUnusable: not a directory, or the system refuses it (a name too long, no permission).
        DirectoryNotEmpty: it holds files and no claim of this kind.
        DirectoryOwned: another study's directory.
        DirectoryBusy: another live process holds it.
    """
    if kind not in MARKERS or (kind == "study") != (owner is not None):
        raise ValueError(f"kind={kind!r}, owner={owner!r}: expected kind 'run' without an owner, or 'study' with one")
    path = Path(path)
    try:
        return _claim(path, kind, owner)
    except RunDirError:
        raise
    except OSError as err:  # a name too long, a component that is a file, a loop of links...
        raise DirectoryUnusable(path, err.strerror or str(err)) from None


def _claim(path: Path, kind: str, owner: str | None) -> Path:
    marker = MARKERS[kind]
    if path.exists() and not path.is_dir():
        raise DirectoryUnusable(path, "it exists and is not a directory")
    if owner is not None and (path / marker).exists():
        return _reclaim(path, kind, owner)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DirectoryUnusable(path, f"cannot create it: {err.strerror}") from None
    if created:
        _created.add(path.resolve())
    if any(p.name != marker for p in path.iterdir()):
        raise DirectoryNotEmpty(path, kind)
    try:
        fd = os.open(path / marker, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    except FileExistsError:  # only the marker: a claim another process holds, or one that died
        return _reclaim(path, kind, owner) if owner is not None else lock_dir(path)
    except OSError as err:
        raise DirectoryUnusable(path, f"not writable: {err.strerror}") from None
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new file: nobody else can hold it
    _stamp(fd, f"{owner}\n" if owner is not None else _pid("started"))
    _held[path.resolve()] = fd
    return path


def _reclaim(path: Path, kind: str, owner: str) -> Path:
    """Claim again the directory ``owner`` claimed before (a study going on in it)."""
    try:
        found = read_regular(path / MARKERS[kind], 4096, f"a droplab {kind}'s marker").decode().strip()
    except ValueError as err:  # a FIFO, a device, not text
        raise DirectoryUnusable(path, f"its {MARKERS[kind]} is not a droplab {kind} marker ({err})") from None
    if found and found != owner:  # empty: a claim killed before it wrote its owner
        raise DirectoryOwned(path, found, owner, kind)
    fd = _lock(path, kind)
    if not found:
        _stamp(fd, f"{owner}\n")
    _held[path.resolve()] = fd
    return path


def _lock(path: Path, kind: str) -> int:
    """The descriptor of ``path``'s marker, locked for this process (``flock``, not waiting)."""
    marker = path / MARKERS[kind]
    try:
        fd = os.open(marker, os.O_RDWR)
    except FileNotFoundError:
        raise NotADroplabDirectory(path, kind) from None
    except OSError as err:
        raise DirectoryUnusable(path, f"cannot open {marker.name}: {err.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DirectoryBusy(path) from None
    return fd


def _stamp(fd: int, text: str) -> None:
    """Write ``text`` into a held marker, in place of what it held (the lock stays on its inode)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def _pid(what: str) -> str:
    """A run marker's text: which process holds the directory, since when."""
    return f"pid {os.getpid()} {what} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"


def lock_dir(path: str | os.PathLike) -> Path:
    """Take over an existing run directory (to resume it); refuse while another process holds it."""
    path = Path(path)
    fd = _lock(path, "run")
    if not os.access(path, os.W_OK):
        os.close(fd)
        raise DirectoryUnusable(path, "not writable", "a run directory")
    for stale in path.glob(".*.tmp-*"):  # half-written files of a process killed mid-write
        stale.unlink()
    _stamp(fd, _pid("resumed"))
    _held[path.resolve()] = fd
    return path


def release_dir(path: str | os.PathLike) -> None:
    """Give up this process's lock on a run directory (claimed or locked)."""
    fd = _held.pop(Path(path).resolve(), None)
    _created.discard(Path(path).resolve())
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def held(directory: str | os.PathLike, undo: Iterable[str] | None = None) -> Iterator[Path]:
    """A directory this process has claimed or locked, for a ``with`` block: released when the
    block ends, however it ends. With ``undo`` (the files a failed start may leave, e.g.
    ``["config.json"]``), a failure inside first undoes the claim when nothing else was written
    (:func:`abandon_dir`)."""
    try:
        yield Path(directory)
    except BaseException:
        if undo is not None:
            abandon_dir(directory, undo)
        raise
    finally:
        release_dir(directory)


def claimed(path: str | os.PathLike, kind: str = "run", owner: str | None = None) -> contextlib.AbstractContextManager:
    """:func:`claim_dir` for a ``with`` block: the directory is released when the block ends, however it ends."""
    return held(claim_dir(path, kind, owner))


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


def claim_new(out: str | os.PathLike | None, root: str | os.PathLike, name: str) -> Path:
    """Claim ``out`` for a new run (:func:`claim_dir`), or when it is None a fresh
    ``root/<name>-<timestamp>`` (:func:`new_run_dir`)."""
    return claim_dir(out) if out is not None else new_run_dir(root, name)


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
            raise DirectoryUnusable(candidate, err.strerror or str(err)) from None
        try:
            return claim_dir(candidate)
        except RunDirError:
            if not os.access(candidate.parent, os.W_OK):
                raise
            continue
    raise DirectoryUnusable(root, "no free name for a run directory in it", "the root of run directories")
