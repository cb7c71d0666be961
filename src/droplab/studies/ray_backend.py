"""A study's jobs as tasks on a Ray cluster: the same jobs, keys, results and store as here.

Ray: A Distributed Framework for Emerging AI Applications, P. Moritz, R. Nishihara et al., OSDI 2018.

:class:`RayBackend` decides only where a job runs. What moves where:

- the driver (the process running ``droplab study``) loads and verifies Fashion-MNIST once and
  puts its images in Ray's object store as uint8 (about 55 MB, :func:`.datapack.pack`); a worker takes
  them from there on its first task and keeps them, as float32, for the life of the worker
  (:func:`_worker_data`): the nodes need droplab installed, not the dataset;
- a task trains one job (:func:`droplab.studies.jobs.run_job`) with ``cpus_per_run`` threads and
  returns its result record, with where it ran (``machine``: node, threads, versions, and the
  bytes it read from disk); the driver alone writes the store, atomically, as each result comes
  (``ray.wait``), so a stop loses only the runs still under way;
- a node that cannot run a job as its key says (fewer cores than its threads, another precision
  than the driver's machine) refuses it with :class:`ClusterError`, which ends the study;
- a worker or node that dies mid-run: the driver submits the job again, at most
  ``max_retries`` times (a run is a function of its configuration and thread count, so the
  retry's result is the same); an error raised by the job itself (a bug, bad data) is not
  retried: it ends the study, as here;
- a stop (SIGINT/SIGTERM to the driver): the runs under way are cancelled (their workers
  killed; a task keeps no checkpoint, since a node has no shared disk with the driver), finished
  ones stay stored, and :class:`~droplab.interrupt.StudyInterrupted` is raised; the same
  command resumes from the store.

Ray is an optional dependency (``pip install 'droplab[ray]'``); without it,
:class:`RayMissing` says how to install it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..data import FILES, FashionMNIST
from ..interrupt import SIGNALS, StopRequest, StudyInterrupted, WorkerLost
from ..threads import usable_cores
from ..train.precision import resolve as resolve_precision
from . import jobs
from .backends import BackendError, RemoteTraceback, Tally, machine_record, portable, signame
from .datapack import pack, unpack

__all__ = ["RayBackend", "BackendError", "RayMissing", "ClusterUnreachable", "ClusterError"]

CONNECT_SECONDS = 3.0  # how long an address may take to answer before it is called unreachable


class RayMissing(ImportError):
    """Ray is not installed here; ``reason`` says what importing it raised."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return (f"the Ray backend needs Ray, which cannot be imported here ({self.reason}); install it with "
                "pip install 'droplab[ray]'")  # fmt: skip


class ClusterUnreachable(ConnectionError):
    """No Ray cluster answers at ``address``; ``reason`` says what happened."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(address, reason)
        self.address, self.reason = address, reason

    def __str__(self) -> str:
        return f"no Ray cluster answers at {self.address} ({self.reason})"


class ClusterError(RuntimeError):
    """The cluster could not run a job as its key says, or failed it: ``what`` says how."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what

    def __str__(self) -> str:
        return self.what


# --- in a worker ----------------------------------------------------------------------------------

_cached: tuple[str, FashionMNIST] | None = None  # (the object's id, the data): for the life of the worker
_dataset_reads = [0]  # bytes of Fashion-MNIST's files this process opened for reading
_hooked: list = []  # whether the hook that counts them is installed
_DATASET_FILES = {name for name, _ in FILES.values()} | {name[:-3] for name, _ in FILES.values()}


def _count_dataset_reads(event: str, args: tuple) -> None:
    """An audit hook: adds the size of any Fashion-MNIST file this process opens for reading."""
    if event == "open" and isinstance(args[0], (str, os.PathLike)) and Path(args[0]).name in _DATASET_FILES:
        with contextlib.suppress(OSError):
            _dataset_reads[0] += os.stat(args[0]).st_size


def _disk_reads() -> int:
    """Bytes this process has caused to be read from storage (Linux's /proc/self/io; -1 elsewhere)."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return -1
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("read_bytes:")))


def _worker_data(box: list) -> FashionMNIST:
    """The data of ``box[0]`` (an object reference, boxed so that Ray does not fetch it for every
    task): fetched from the object store on this worker's first task, then kept."""
    global _cached
    import ray

    if _cached is None or _cached[0] != box[0].hex():
        _cached = (box[0].hex(), unpack(ray.get(box[0])))
    return _cached[1]


def _check_node(job: dict, precision: str) -> None:
    """ClusterError unless this node runs ``job`` as its key says: with the threads it asks for
    (more than its usable cores would be capped), and at the precision the driver's machine uses."""
    import ray

    asked, cores = job["train"]["threads"], usable_cores()
    node = f"node {ray.get_runtime_context().get_node_id()[:12]} ({socket.gethostname()})"
    if asked > cores:
        raise ClusterError(f"{node} has {cores} usable core(s), fewer than the {asked} threads a run asks for "
                           "(its result would not be the one its key names); ask for fewer CPUs per run")  # fmt: skip
    if (used := resolve_precision(job["train"].get("precision", "fp32"))[0]) != precision:
        raise ClusterError(f"{node} computes in {used} where the driver's machine computes in {precision}: the "
                           "same run would give other numbers there")  # fmt: skip


def _task(job: dict, box: list, precision: str = "fp32") -> dict:
    """One job, in a Ray worker: its result record, with where and how it ran (``machine``)."""
    import ray

    if not _hooked:
        sys.addaudithook(_count_dataset_reads)  # from before this worker holds the data: its reads count
        _hooked.append(True)
    disk, dataset = _disk_reads(), _dataset_reads[0]
    try:
        _check_node(job, precision)
        result = jobs.run_job(job, _worker_data(box))
    except Exception as err:  # raised in the driver as it is (when it pickles: portable)
        raise portable(err) from None
    result["machine"] = machine_record("ray") | {
        "node": ray.get_runtime_context().get_node_id(),
        "disk_read_bytes": _disk_reads() - disk if disk >= 0 else None,
        "dataset_read_bytes": _dataset_reads[0] - dataset,
    }
    result["machine"]["versions"]["ray"] = ray.__version__
    return result


# --- the driver -------------------------------------------------------------------------------------


def _import_ray():
    try:
        import ray
    except Exception as err:  # not installed, or broken
        raise RayMissing(f"{type(err).__name__}: {err}") from None
    return ray


def _check_reachable(address: str) -> None:
    """ClusterUnreachable unless something accepts a connection at ``address`` (HOST:PORT) within CONNECT_SECONDS."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except socket.timeout:
        raise ClusterUnreachable(address, f"no answer within {CONNECT_SECONDS:g} s") from None
    except OSError as err:
        raise ClusterUnreachable(address, err.strerror or type(err).__name__) from None


class RayBackend:
    """Runs a study's jobs as Ray tasks, ``cpus_per_run`` CPUs and threads each (see the module's doc).

    Args:
        address: ``"auto"`` (a cluster started on this machine with ``ray start``), ``"HOST:PORT"``
            of a cluster's head, or None: start a local cluster of this machine's cores for the
            study, and stop it at the end. Where this process is connected already (its own
            ``ray.init``), that connection is used, whatever the address.
        cpus_per_run: CPUs Ray reserves for a run, and its torch threads.
        max_retries: how many times a job whose worker or node died is submitted again.

    Use it as a context manager (or call :meth:`close`): the connection, and the data put in the
    object store, are kept between the studies run with it.
    """

    stops_at_once = False  # a first signal is only recorded; run() cancels the tasks under way

    def __init__(self, address: str | None = None, cpus_per_run: int = 1, max_retries: int = 3,
                 log: Callable[[str], None] = print) -> None:  # fmt: skip
        if isinstance(cpus_per_run, bool) or not isinstance(cpus_per_run, int) or cpus_per_run < 1:
            raise BackendError("cpus_per_run", cpus_per_run, "an integer >= 1")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= 100:
            raise BackendError("max_retries", max_retries, "an integer from 0 to 100")
        if address is not None and address != "auto":
            _check_address_form(address)
        self.address, self.cpus_per_run, self.max_retries, self.log = address, cpus_per_run, max_retries, log
        self._ray, self._remote, self._data, self._owned = None, None, None, False

    def __enter__(self) -> RayBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def threads(self) -> int:
        return self.cpus_per_run

    def describe(self) -> str:
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
        return f"{where}, {self.cpus_per_run} CPU(s) per run"

    def connect(self):
        """Connect (once): ClusterUnreachable, RayMissing, or BackendError when no node has ``cpus_per_run`` CPUs."""
        if self._ray is not None:
            return self._ray
        ray = _import_ray()
        self._owned = not ray.is_initialized()  # a connection its caller made (ray.init) is used, and left open
        if self._owned and self.address not in (None, "auto"):
            _check_reachable(self.address)
        kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        handlers = {s: signal.getsignal(s) for s in SIGNALS}  # ray.init installs its own (SIGTERM: exit 15)
        try:
            if self._owned and self.address is None:
                ray.init(num_cpus=usable_cores(), **kwargs)
            elif self._owned:
                ray.init(address=self.address, **kwargs)
        except Exception as err:  # refused, timed out, not a Ray cluster's head, another Ray version
            lines = str(err).strip().splitlines() or [""]
            raise ClusterUnreachable(self.address or "a local cluster", f"{type(err).__name__}: {lines[-1][:300]}"
                                     ) from None  # fmt: skip
        finally:
            for s, handler in handlers.items():
                if handler is not None:
                    signal.signal(s, handler)
        self._ray = ray
        largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=0)
        if largest < self.cpus_per_run:
            self.close()
            raise BackendError("cpus_per_run", self.cpus_per_run, f"at most {largest:g}, the CPUs of the cluster's "
                               "largest node")  # fmt: skip
        self._remote = ray.remote(_task).options(num_cpus=self.cpus_per_run, max_retries=0)
        nodes = sum(n["Alive"] for n in ray.nodes())
        self.log(f"ray: {nodes} node(s), {ray.cluster_resources().get('CPU', 0):g} CPUs, "
                 f"{self.cpus_per_run} per run")  # fmt: skip
        return ray

    def close(self) -> None:
        """Disconnect (stopping the local cluster it started), unless its caller connected."""
        if self._ray is not None and self._owned:
            self._ray.shutdown()
        self._ray, self._remote, self._data = None, None, None

    def _data_ref(self, data: FashionMNIST):
        """The data's object reference: put once per dataset (and validation split)."""
        identity = (data.digest, len(data.val_x), data.source)
        if self._data is None or self._data[0] != identity:
            self._data = (identity, self._ray.put(pack(data)))
        return self._data[1]

    def _capacity(self) -> int:
        """How many runs the cluster's live nodes can hold at once now (nodes may join or leave)."""
        return sum(int(n["Resources"].get("CPU", 0) // self.cpus_per_run) for n in self._ray.nodes() if n["Alive"])

    def run(self, todo: dict, data: FashionMNIST, partial: Path, stop: StopRequest,
            store_result: Callable, tally: Tally) -> None:  # fmt: skip
        """Every job of ``todo`` as a task; each result stored (``store_result``) as it comes."""
        ray = self.connect()
        box = [self._data_ref(data)]  # boxed: the task fetches it only when its worker does not hold it
        queue, flight, finished = list(todo.items()), {}, 0  # flight: reference -> (tag, attempt)
        capacity, checked = self._capacity(), time.monotonic()
        try:
            while (queue or flight) and stop.signum is None:
                if time.monotonic() - checked > 2.0:
                    capacity, checked = self._capacity(), time.monotonic()
                if capacity == 0 and not flight:
                    raise ClusterError(f"no live node of the cluster has the {self.cpus_per_run} CPUs a run asks for "
                                       f"any more; {finished} of {len(todo)} runs finished")  # fmt: skip
                while queue and len(flight) < capacity:
                    tag, (_, job) = queue.pop(0)
                    flight[self._remote.remote(job, box, self._precision(job))] = (tag, 0)
                tally.update(running=len(flight))
                ready, _ = ray.wait(list(flight), num_returns=1, timeout=0.2)
                for ref in ready:
                    tag, attempt = flight.pop(ref)
                    result = self._result(ray, ref, tag, attempt)
                    if result is None:  # lost with its worker: again
                        tally.update(retried=tally.retried + 1)
                        job = todo[tag][1]
                        flight[self._remote.remote(job, box, self._precision(job))] = (tag, attempt + 1)
                        continue
                    store_result(tag, todo[tag][0], result)
                    finished += 1
        finally:
            for ref in flight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            tally.update(running=0)
        if stop.signum is not None and (queue or flight):  # a signal after the last result stops nothing
            cancelled = f"; {len(flight)} run{'s' if len(flight) != 1 else ''} under way cancelled" if flight else ""
            raise StudyInterrupted(stop.signum, f"interrupted by {signame(stop.signum)} after {finished} of "
                                   f"{len(todo)} runs{cancelled}")  # fmt: skip

    @staticmethod
    def _precision(job: dict) -> str:
        """The precision the driver's machine computes ``job`` in: every node must compute it so."""
        return resolve_precision(job["train"].get("precision", "fp32"))[0]

    def _result(self, ray, ref, tag: tuple[str, int], attempt: int) -> dict | None:
        """A finished task's record; None: its worker or node died and the job may run again
        (another of Ray's errors, such as a node's environment that cannot be set up, ends the study)."""
        e = ray.exceptions
        lost = (e.WorkerCrashedError, e.NodeDiedError, e.LocalRayletDiedError, e.ObjectLostError,
                 e.OutOfMemoryError)  # fmt: skip
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:  # the job itself failed: as it would here
            cause = err.cause if isinstance(err.cause, BaseException) else RuntimeError(str(err))
            raise cause from RemoteTraceback(str(err))
        except lost as err:  # the worker, its node or the result was lost
            what = f"{tag[0]}, seed {tag[1]}: its Ray worker was lost ({type(err).__name__})"
            if attempt >= self.max_retries:
                raise WorkerLost(signal.SIGKILL, f"{what} {attempt + 1} times; the study stopped") from None
            self.log(f"  {what}; submitted again ({attempt + 1} of at most {self.max_retries})")
            return None
        except ray.exceptions.RayError as err:  # unschedulable, its environment not set up, Ray's own failure
            lines = str(err).strip().splitlines() or [""]
            raise ClusterError(f"the Ray cluster failed {tag[0]}, seed {tag[1]}: {type(err).__name__}: "
                               f"{lines[-1][:300]}") from None  # fmt: skip


def _check_address_form(address: object) -> None:
    """BackendError unless ``address`` reads HOST:PORT, with a port from 1 to 65535."""
    host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not host or "://" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BackendError("address", address, "auto, or HOST:PORT of a Ray cluster's head, with the port its "
                           "head printed on starting (e.g. 10.0.0.5:6379; not a ray:// client address)")

