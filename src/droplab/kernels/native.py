"""The CPU dropout kernel in C (``native.c``): compiled on first use, cached on disk, loaded with ctypes.

The library is built once per machine with the C compiler found (``CC``, else ``cc``, ``gcc`` or
``clang`` on ``PATH``) and kept in droplab's cache directory (``DROPLAB_CACHE_DIR``, else
``$XDG_CACHE_HOME/droplab``, else ``~/.cache/droplab``) under a name keyed by the source, the flags
and the processor (its architecture, model and feature flags: ``-march=native`` code must not run
on another CPU sharing the home directory). A process with a warm cache reads, checks and loads
the file in about a millisecond; nothing imports numba.

Builds are written to a temporary name and renamed into place, with a digest beside them that is
checked before every load: several processes may build at once, and a truncated or corrupted
file is rebuilt, never loaded. Where no compiler works, :class:`NativeUnavailable` says why and
:mod:`droplab.kernels.cpu` uses numba instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from .counter import threshold

__all__ = ["NAME", "NativeUnavailable", "FLAGS", "cache_dir", "library_path", "library", "unavailable_reason",
           "set_threads", "dropout", "relu_dropout", "relu_dropout_backward", "dropout_add"]

NAME = "native"
SOURCE = Path(__file__).with_name("native.c")
# never -ffast-math: a division must stay one exact IEEE division (the bits equal numba's)
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c99", "-ffp-contract=off")
ABI = 3  # what droplab_native_abi() answers in a build of this source
COMPILE_TIMEOUT_S = 300

builds = 0  # how many times this process ran the compiler (a warm cache runs it never)


class NativeUnavailable(OSError):
    """The C kernel cannot be built or loaded on this machine; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``DROPLAB_CACHE_DIR``, ``$XDG_CACHE_HOME/droplab`` or ``~/.cache/droplab``."""
    if os.environ.get("DROPLAB_CACHE_DIR"):
        return Path(os.environ["DROPLAB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "droplab"


def _processor() -> str:
    """The architecture, and the model name and feature flags from ``/proc/cpuinfo`` where it exists."""
    found = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:  # the first processor's lines are enough: stop at its flags
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "flags", "Features", "CPU part") and key not in found:
                    found[key] = value.strip()
                if key == "flags" or not line.strip():
                    break
    except OSError:
        pass
    return "\n".join([platform.machine(), *(f"{k}: {v}" for k, v in sorted(found.items()))])


def library_path() -> Path:
    """The cached library's path: keyed by the source, the flags and the processor."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), _processor().encode()):
        key.update(hashlib.sha256(part).digest())
    return cache_dir() / f"droplab-native-{key.hexdigest()[:24]}.so"


def _compiler() -> list[str]:
    """The compiler's command: ``CC`` (split as a shell would), else the first of cc, gcc, clang on PATH."""
    if os.environ.get("CC"):
        command = shlex.split(os.environ["CC"])
        if not shutil.which(command[0]):
            raise NativeUnavailable(f"CC = {os.environ['CC']!r} is not an executable")
        return command
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return [name]
    raise NativeUnavailable("no C compiler: CC is unset and none of cc, gcc, clang is on PATH")


def _digest_path(path: Path) -> Path:
    return path.with_suffix(".sha256")


def _build(path: Path) -> None:
    """Compile native.c to ``path`` (and its digest): to temporary names, then renamed into place."""
    global builds
    command = _compiler()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".build-", suffix=".so")
        os.close(fd)
    except OSError as err:
        raise NativeUnavailable(f"cannot write to the cache directory {path.parent}: {err}") from None
    sidecar = tmp + ".sha256"
    try:
        builds += 1
        try:
            done = subprocess.run([*command, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True,
                                  timeout=COMPILE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise NativeUnavailable(f"{' '.join(command)} could not compile {SOURCE.name}: {err}") from None
        if done.returncode != 0:
            tail = done.stderr.strip()[-2000:]
            raise NativeUnavailable(f"{' '.join(command)} failed on {SOURCE.name} (exit {done.returncode}): {tail}")
        Path(sidecar).write_text(hashlib.sha256(Path(tmp).read_bytes()).hexdigest())
        os.chmod(tmp, 0o755)  # mkstemp's 0600 would keep a shared cache from other users
        os.chmod(sidecar, 0o644)
        os.replace(tmp, path)
        os.replace(sidecar, _digest_path(path))
    except NativeUnavailable:
        raise
    except OSError as err:  # a full disk, a rename refused in a shared directory...: not a crash, a fallback
        raise NativeUnavailable(f"cannot write the kernel to the cache directory {path.parent}: {err}") from None
    finally:
        for leftover in (tmp, sidecar):
            with contextlib.suppress(OSError):
                os.unlink(leftover)


def _open(path: Path) -> ctypes.CDLL | None:
    """The library at ``path`` if it is whole (its digest matches) and answers the ABI; else ``None``."""
    try:
        expected = _digest_path(path).read_text().strip()
        if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            return None
        lib = ctypes.CDLL(str(path))
        return lib if lib.droplab_native_abi() == ABI else None
    except (OSError, AttributeError):
        return None


_P, _I64, _U64, _U32, _F64, _INT = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint32,
                                    ctypes.c_double, ctypes.c_int)
_SIGNATURES = {  # the arguments of each exported function, per dtype suffix
    "droplab_dropout_": (_P, _P, _I64, _U64, _U32, _F64, _INT),
    "droplab_relu_dropout_": (_P, _I64, _U64, _U32, _F64, _INT),
    "droplab_relu_dropout_backward_": (_P, _P, _P, _I64, _F64, _INT),
    "droplab_dropout_add_": (_P, _P, _I64, _P, _P, _I64, _U64, _U32, _F64, _INT),
}
_functions: dict[torch.dtype, tuple] = {}  # dtype -> (dropout, relu_dropout, relu_dropout_backward, dropout_add,
#                                                      all_finite)


def _declare(lib: ctypes.CDLL) -> None:
    for dtype, suffix in ((torch.float32, "f32"), (torch.float64, "f64")):
        found = []
        for prefix, argtypes in _SIGNATURES.items():
            fn = getattr(lib, prefix + suffix)
            fn.argtypes, fn.restype = argtypes, None
            found.append(fn)
        finite = getattr(lib, "droplab_all_finite_" + suffix)
        finite.argtypes, finite.restype = (_P, _I64), _INT
        _functions[dtype] = (*found, finite)


_state: dict[str, object] = {}  # "lib", or "reason" once loading failed (tried once per process)


def library() -> ctypes.CDLL:
    """The loaded kernel: from the cache, or compiled now. Raises :class:`NativeUnavailable`."""
    if "lib" not in _state and "reason" not in _state:
        try:
            path = library_path()
            lib = _open(path)
            if lib is None:
                _build(path)
                lib = _open(path)
            if lib is None:
                raise NativeUnavailable(f"the kernel compiled to {path} does not load")
            _declare(lib)
            _state["lib"] = lib
        except NativeUnavailable as err:
            _state["reason"] = err.reason
    if "lib" not in _state:
        raise NativeUnavailable(_state["reason"])
    return _state["lib"]


def unavailable_reason() -> str | None:
    """Why the C kernel cannot be used here, or ``None`` when it can (loading it if not yet loaded)."""
    try:
        library()
    except NativeUnavailable as err:
        return err.reason
    return None


def set_threads(requested: int) -> int:
    """The number of threads a call asked for ``requested`` runs on: all of them (OpenMP regions
    sized per call; nothing process-wide changes)."""
    return max(1, requested)


@functools.lru_cache(maxsize=64)
def _constants(p: float) -> tuple[int, float]:
    """The threshold and ``1 - p`` (rounded to the tensor's dtype in C, as numpy rounds it)."""
    return threshold(p), 1.0 - p


# The kernels on raw addresses (``Tensor.data_ptr()``): checked by droplab.kernels.cpu, not here.
def dropout(x: int, out: int, n: int, seed: int, p: float, dtype: torch.dtype, chunks: int) -> None:
    _functions[dtype][0](x, out, n, seed, *_constants(p), chunks)


def relu_dropout(h: int, n: int, seed: int, p: float, dtype: torch.dtype, chunks: int) -> None:
    _functions[dtype][1](h, n, seed, *_constants(p), chunks)


def relu_dropout_backward(g: int, out: int, gin: int, n: int, p: float, dtype: torch.dtype, chunks: int) -> None:
    _functions[dtype][2](g, out, gin, n, 1.0 - p, chunks)


def dropout_add(x: int, bias: int | None, bias_n: int, residual: int, out: int, n: int, seed: int, p: float,
                dtype: torch.dtype, chunks: int) -> None:
    _functions[dtype][3](x, bias, bias_n, residual, out, n, seed, *_constants(p), chunks)


def all_finite(x: int, n: int, dtype: torch.dtype) -> bool:
    return bool(_functions[dtype][4](x, n))
