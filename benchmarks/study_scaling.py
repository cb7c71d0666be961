"""How fast a study's runs train on each backend, measured in one run: completed runs per minute
for the local backend (one process, all of torch's threads) and for Ray with 1, 2, ... workers
(a local Ray cluster of that many CPUs, one CPU and one thread per run), and the bytes each run
read from disk: on Ray, none of the dataset (it comes from the object store).

Trains the same runs (the lecture's MLP, dropout 0.5, ``--epochs`` epochs, seeds 0..N-1, on
Fashion-MNIST) through :func:`droplab.studies.run_study` on each backend in turn, each into a
fresh store, so every run is trained; the wall time includes starting the Ray workers. Where a
network namespace can be made (``unshare -n``, as root), the script runs itself in one with only
loopback up, so that the local cluster's traffic stays on 127.0.0.1.

    python benchmarks/study_scaling.py [--runs 8] [--epochs 2] [--workers 1,2] [--data-dir DIR]

With ``--project SUITE_DIR`` (the output directory of ``droplab study all``) it prints instead
a projection of that suite's wall time on N nodes like this machine (one run per node at a
time, ``--cpus-per-run`` = its cores), from the run times the suite recorded: per study and
stage, the larger of the stage's work shared among the nodes and its longest run. It is a
projection, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from droplab.data import FILES, find_data_dir
from droplab.studies import Analysis, Study, Variant, run_study
from droplab.studies.backends import Local
from droplab.studies.ray_backend import RayBackend
from droplab.threads import usable_cores

DATASET = {name for name, _ in FILES.values()}


def _study(epochs: int) -> Study:
    return Study("scaling-benchmark", "", "", lambda quick: [Variant("dropout 0.5", {"dropout": (0.5, 0.5)})],
                 lambda r: Analysis([], [], {}), epochs=epochs, base={"model": "mlp", "eval_train_size": 10_000},
                 protocol="lecture")  # fmt: skip


class _DatasetReads:
    """Bytes of the Fashion-MNIST files this process opens for reading (an audit hook)."""

    total = 0

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], (str, os.PathLike)) and Path(args[0]).name in DATASET:
            cls.total += os.stat(args[0]).st_size


def measure(label: str, backend, data_dir: Path, runs: int, epochs: int) -> dict:
    """Train ``runs`` runs on ``backend`` into a fresh store: runs per minute and the disk reads per run."""
    with tempfile.TemporaryDirectory() as out:
        before = _DatasetReads.total
        start = time.perf_counter()
        run_study(_study(epochs), data_dir, out, seeds=runs, backend=backend, log=lambda line: None)
        wall = time.perf_counter() - start
        records = [json.loads(p.read_text()) for p in Path(out, "runs").glob("*.json")]
    here = (_DatasetReads.total - before) / runs  # the driver's own reads (it loads the data), shared by its runs
    machines = [r["machine"] for r in records]
    dataset = [m.get("dataset_read_bytes", here) for m in machines] if label != "local" else [here] * runs
    disk = [m["disk_read_bytes"] for m in machines if m.get("disk_read_bytes") is not None]
    return {"label": label, "wall": wall, "per_minute": 60 * runs / wall, "dataset": dataset, "disk": disk,
            "threads": machines[0]["threads"]}  # fmt: skip


def _mb(values: list) -> str:
    if not values:
        return "not recorded (the local backend's runs share this process)"
    return f"{statistics.median(values) / 1e6:.2f} MB median, {max(values) / 1e6:.2f} MB max"


def benchmark(args: argparse.Namespace) -> None:
    import ray

    sys.addaudithook(_DatasetReads.hook)
    data_dir = find_data_dir(args.data_dir)
    workers = [int(w) for w in args.workers.split(",")]
    results = [measure("local", Local(), data_dir, args.runs, args.epochs)]
    for n in workers:
        ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        try:
            with RayBackend(None, cpus_per_run=1, log=lambda line: None) as backend:
                results.append(measure(f"ray, {n} worker(s)", backend, data_dir, args.runs, args.epochs))
        finally:
            ray.shutdown()
    print(f"{args.runs} runs of {args.epochs} epochs (784-256-256-10, dropout 0.5, 55,000 images) per backend; "
          f"{_cpu()} ({platform.machine()}), {usable_cores()} cores, torch {torch.__version__}, "
          f"ray {ray.__version__}; network namespace: {os.environ.get('DROPLAB_NETNS', 'none')}")  # fmt: skip
    base = results[0]["per_minute"]
    for r in results:
        print(f"  {r['label']:18s} {r['threads']} thread(s) per run: {r['per_minute']:6.2f} runs/min "
              f"({r['wall']:6.1f} s wall; {r['per_minute'] / base:.2f}x local)")  # fmt: skip
        print(f"  {'':18s} dataset read from disk per run: {_mb(r['dataset'])}; storage reads per run "
              f"(Linux read_bytes: module loads included): {_mb(r['disk'])}")  # fmt: skip


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        return "unknown CPU"


def project(suite: Path, nodes: list[int]) -> None:
    """The suite's wall time on N nodes, projected from the run times it recorded (see the module's doc)."""
    studies = [json.loads(p.read_text()) for p in sorted(suite.glob("*/study.json"))]
    stored = [json.loads(p.read_text()) for p in (suite / "runs").glob("*.json")]
    measured = sum(r["summary"]["seconds"] for r in stored if "summary" in r)
    if not studies or not measured:
        sys.exit(f"{suite}: no */study.json and runs/*.json in it (the output directory of droplab study all)")
    rows = []
    for st in studies:
        times = [r["summary"]["seconds"] for v in st["variants"].values() for r in v["per_seed"]]
        widened = [n.split(" was widened past it to ")[1].split(";")[0].count(",") + 1 for n in st["notes"]
                   if " was widened past it to " in n]  # fmt: skip
        stages = 1 if st["protocol"] == "lecture" else 2 + max(widened, default=0)
        rows.append((st["runs"], statistics.mean(times), max(times), stages, len(times)))
    # Each study's work, estimated from its confirmation runs, then scaled so that the suite's adds up
    # to what its store's runs took (runs shared between studies are trained once).
    scale = measured / sum(runs * mean for runs, mean, *_ in rows)
    print(f"projection, not a measurement: {len(rows)} studies of {suite}; its store's {len(stored)} runs took "
          f"{measured / 60:.1f} min by their own clocks; per study and stage, the larger of the stage's work shared "
          "among N nodes (one run per node at a time) and the study's longest confirmation run")  # fmt: skip
    for n in nodes:
        total = 0.0
        for runs, mean, longest, stages, confirm in rows:
            per_stage = [(runs - confirm) / max(stages - 1, 1)] * (stages - 1) + [confirm]
            total += sum(max(k * mean * scale / n, longest) for k in per_stage if k)
        print(f"  {n:3d} node(s): about {total / 60:6.1f} min")


def _in_namespace() -> None:
    """Run this script again in a network namespace with only loopback up, where one can be made."""
    if os.environ.get("DROPLAB_NETNS") or not shutil.which("unshare") or not shutil.which("ip"):
        return
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True)
    if probe.returncode == 0:
        os.environ["DROPLAB_NETNS"] = "loopback"
        script = f"ip link set lo up && exec {shlex.quote(sys.executable)} {shlex.join(sys.argv)}"
        os.execvp("unshare", ["unshare", "-n", "sh", "-c", script])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=8, help="runs (seeds) per backend")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", default="1,2", help="Ray worker counts to measure, e.g. 1,4,8,16")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--project", default=None, metavar="SUITE_DIR", help="project a suite's time instead")
    ap.add_argument("--nodes", default="1,2,4,8,16", help="with --project: node counts")
    args = ap.parse_args()
    if args.project:
        project(Path(args.project), [int(n) for n in args.nodes.split(",")])
        return
    _in_namespace()
    benchmark(args)


if __name__ == "__main__":
    main()
