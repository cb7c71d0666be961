"""Memory: what autograd keeps for backward (measured), what a run needs and what is free (estimated)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .data import NUM_CLASSES as NUM_OUTPUTS
from .data import NUM_INPUTS

__all__ = ["saved_bytes", "run_bytes", "available_bytes"]

FLOAT = 4  # bytes of a float32: parameters, gradients, optimizer buffers, activations, images
# glibc's malloc keeps freed blocks (up to 32 MiB each) in its heap, where they fragment: a
# training step's resident set grew by about 1.6x its largest live tensors (tests/test_memory.py)
SLACK = 1.5
NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as about 2**63


def saved_bytes(fn: Callable[..., object], *args: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn(*args)`` runs.

    Examples::

        >>> x = torch.randn(512, 512, requires_grad=True)
        >>> saved_bytes(lambda t: torch.nn.functional.dropout(t, 0.5), x) >= 512 * 512
        True
    """
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return total


def run_bytes(
    hidden: Sequence[int],
    optimizer_buffers: int,
    batch_size: int,
    eval_batch_size: int,
    new_images: int = 0,
    input_dim: int = NUM_INPUTS,
    classes: int = NUM_OUTPUTS,
) -> int:
    """About the peak bytes a training run of an MLP adds to the process (all float32).

    - persistent: the weights (with biases, and 2 per hidden unit for a norm layer), their
      gradients (alive from the first backward on, through evaluation), ``optimizer_buffers``
      copies of them (SGD 0, with momentum 1, Adam 2), and ``new_images``: images the run
      copies beyond the data already in memory (a training subset's copy) with their labels;
    - then the largest of three phases that do not overlap:
      an optimizer step's temporaries, ``optimizer_buffers + 1`` copies of the weights (Adam's
      square root and update);
      a training batch: its images (a gathered copy) and 4 tensors of ``batch x width`` per
      hidden layer (the linear and ReLU outputs, dropout's output, a gradient in backward;
      the reference dropout's mask instead of a gradient: backward frees as it goes);
      an evaluation batch: 2 tensors of ``batch x width`` per hidden layer and one of the
      widest (evaluation records autograd's graph, and a batch's graph is freed only when
      the next batch's forward has finished).

    The phase is counted ``SLACK`` (1.5) times: the allocator's heap holds freed blocks.
    Not counted: torch, numba and the data already loaded, which the process holds before
    the run starts. ``batch_size`` and ``eval_batch_size`` are the sizes that occur (at most
    the number of images). Measured in ``tests/test_memory.py``.

    Examples::

        >>> round(run_bytes([256, 256], 0, 256, 8192) / 2**20)  # the lecture's run, in MiB
        63
        >>> round(run_bytes([4096, 4096, 4096], 2, 256, 8192) / 2**30, 2)  # Adam, 3 layers of 4096, GiB
        1.86
    """
    dims = [input_dim, *hidden, classes]
    params = sum(a * b + b for a, b in zip(dims, dims[1:])) + 2 * sum(hidden)
    persistent = params * (2 + optimizer_buffers) + new_images * (input_dim + 2)  # int64 label: 2 floats
    step = params * (optimizer_buffers + 1)
    train = batch_size * (input_dim + 4 * sum(hidden) + 3 * classes)
    evaluate = eval_batch_size * (2 * sum(hidden) + max(hidden) + 3 * classes)
    return int(FLOAT * (persistent + SLACK * max(step, train, evaluate)))


def _number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, ValueError):
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _cgroup_available(root: Path, proc_cgroup: Path) -> int | None:
    """The least memory free under a limit of this process's cgroup or one above it; None: no limit.

    Free is the limit less the usage, with inactive file cache counted as free (the kernel
    reclaims it before it kills, as container runtimes count a working set).
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    layouts = []  # (directory of the hierarchy, the process's path in it, file names)
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            layouts.append((root, path, ("memory.max", "memory.current", "inactive_file")))
        elif "memory" in controllers.split(","):
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
            layouts.append((root / "memory", path, files))
    best = None
    for base, path, (limit_file, usage_file, inactive) in layouts:
        parts = [p for p in path.split("/") if p and p != ".."]
        # the process's cgroup, then each above it (a container may see its own as the root)
        for depth in range(len(parts), -1, -1):
            directory = base.joinpath(*parts[:depth])
            limit, usage = _number(directory / limit_file), _number(directory / usage_file)
            if limit is None or limit >= NO_LIMIT or usage is None:
                continue
            free = max(0, limit - usage + _stat(directory / "memory.stat", inactive))
            best = free if best is None else min(best, free)
    return best


def available_bytes(
    meminfo: str | Path = "/proc/meminfo",
    cgroup_root: str | Path = "/sys/fs/cgroup",
    proc_cgroup: str | Path = "/proc/self/cgroup",
) -> int | None:
    """Bytes of memory a new allocation can use now: the smaller of the system's
    ``MemAvailable`` and what the process's cgroup limits leave (v1 or v2); ``None`` where
    neither is known (not Linux).

    Examples::

        >>> free = available_bytes()
        >>> free is None or free > 0
        True
    """
    system = None
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                system = int(line.split()[1]) * 1024  # kB
                break
    except (OSError, ValueError, IndexError):
        pass
    group = _cgroup_available(Path(cgroup_root), Path(proc_cgroup))
    known = [b for b in (system, group) if b is not None]
    return min(known) if known else None
