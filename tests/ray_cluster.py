"""A real two-node Ray cluster on this machine, and droplab studies on it (run by tests/test_ray.py).

Run as ``unshare -n python tests/ray_cluster.py WORK DATA`` (a network namespace of its own,
with only loopback up, so that no cluster traffic leaves 127.0.0.1; where no namespace can be
made, the test runs it without one). In it:

1. two raylets: ``ray start --head --num-cpus 1`` and ``ray start --address 127.0.0.1:P --num-cpus 1``;
2. ``droplab study headline --quick --seeds 2 --backend ray --address 127.0.0.1:P`` into ``WORK/ray``;
3. the same into ``WORK/killed``, while a watcher SIGKILLs the first Ray worker it sees running a
   droplab task (``ray::_task``): the job must be retried and the study complete;
4. a longer study into ``WORK/stopped``, SIGINT to the driver once a run is stored, then the same
   command again (it resumes); the same with SIGKILL to the driver, into ``WORK/killed-driver``;
   and the same study into ``WORK/whole`` in one go;
5. ``droplab compare`` on the cluster (``--address auto``) and here; more CPUs per run than a node
   has; whether connecting keeps the driver's signal handlers; an address where no cluster
   listens, timed;
6. ``ray stop``, and the processes of the cluster still alive afterwards.

It writes ``WORK/observed.json``: each command's exit status, output and time, and what was killed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
CLI = [sys.executable, "-m", "droplab"]
# Ray 2.60 authenticates its nodes with a token: every process of the cluster is given this one.
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "token",
       "RAY_AUTH_TOKEN": secrets.token_hex(32)}


# Whether connecting leaves this process's SIGINT/SIGTERM handlers as they were (ray.init sets its own).
HANDLERS = """
import signal, sys
from droplab.studies.ray_backend import RayBackend
signal.signal(signal.SIGTERM, mine := lambda *a: None)
backend = RayBackend(sys.argv[1], log=lambda line: None)
backend.connect()
print("kept" if signal.getsignal(signal.SIGTERM) is mine else f"replaced by {signal.getsignal(signal.SIGTERM)}")
backend.close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], timeout: float = 300) -> dict:
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)
    return {"code": done.returncode, "out": done.stdout, "err": done.stderr, "seconds": time.monotonic() - start}


def task_workers() -> list[int]:
    """Ray workers now running a droplab task (their process title is ``ray::_task``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().startswith(b"ray::_task"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def kill_first_task(killed: list, stop: threading.Event) -> None:
    while not stop.is_set() and not killed:
        if pids := task_workers():
            time.sleep(0.05)  # under way, past its start
            try:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            except ProcessLookupError:
                continue
        time.sleep(0.005)


def cluster_processes(temp: str) -> list[str]:
    """The command lines of processes still alive that belong to the cluster under ``temp``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if temp in line or line.startswith("ray::"):
                found.append(line[:200])
    return found


def main(work: Path, data: str) -> None:
    observed: dict = {"namespace": os.environ.get("DROPLAB_NETNS", "none")}
    temp, port = str(work / "r"), free_port()
    common = ["--data-dir", data, "--no-verify", "--val-size", "100"]
    ray_opts = ["--backend", "ray", "--address", f"127.0.0.1:{port}"]
    try:
        observed["head"] = run([*RAY, "start", "--head", "--num-cpus", "1", "--port", str(port), "--node-ip-address",
                                "127.0.0.1", "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir",
                                temp])  # fmt: skip
        observed["node"] = run([*RAY, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1",
                                "--node-ip-address", "127.0.0.1", "--disable-usage-stats"])  # fmt: skip
        headline = [*CLI, "study", "headline", "--quick", "--seeds", "2", *common]
        observed["ray"] = run([*headline, *ray_opts, "--out", str(work / "ray")])
        killed, stop = [], threading.Event()
        watcher = threading.Thread(target=kill_first_task, args=(killed, stop))
        watcher.start()
        observed["killed"] = run([*headline, *ray_opts, "--out", str(work / "killed")])
        stop.set()
        watcher.join()
        observed["killed"]["pids"] = killed
        longer = [*CLI, "study", "long-training", "--quick", "--seeds", "2", "--epochs", "12", *common, *ray_opts]
        observed["stopped"] = stop_once([*longer, "--out", str(work / "stopped")], work / "stopped" / "runs")
        observed["resumed"] = run([*longer, "--out", str(work / "stopped")])
        observed["driver killed"] = stop_once([*longer, "--out", str(work / "killed-driver")],
                                              work / "killed-driver" / "runs", signal.SIGKILL)  # fmt: skip
        observed["driver killed, resumed"] = run([*longer, "--out", str(work / "killed-driver")])
        observed["whole"] = run([*longer, "--out", str(work / "whole")])
        compare = [*CLI, "compare", "--seeds", "1", "--epochs", "1", *common]
        observed["compare"] = run([*compare, "--backend", "ray", "--address", "auto", "--out",
                                   str(work / "compare-ray")])  # fmt: skip
        observed["compare local"] = run([*compare, "--threads", "1", "--out", str(work / "compare-local")])
        observed["too many cpus"] = run([*headline, *ray_opts, "--cpus-per-run", "2", "--out", str(work / "big")])
        observed["handlers"] = run([sys.executable, "-c", HANDLERS, f"127.0.0.1:{port}"])
        observed["unreachable"] = run([*headline, "--backend", "ray", "--address", f"127.0.0.1:{free_port()}",
                                       "--out", str(work / "nowhere")])  # fmt: skip
    finally:
        observed["ray stop"] = run([*RAY, "stop", "--force"])
        time.sleep(1.0)
        observed["left"] = cluster_processes(temp)
        (work / "observed.json").write_text(json.dumps(observed, indent=1))


def stop_once(cmd: list[str], runs: Path, sig: int = signal.SIGINT) -> dict:
    """Start ``cmd``, send it ``sig`` once a run is stored (a longer one is then under way), wait for it."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    while not list(runs.glob("*.json")) and proc.poll() is None and time.monotonic() - start < 240:
        time.sleep(0.01)
    stored = len(list(runs.glob("*.json")))
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return {"code": proc.returncode, "out": out, "err": err, "seconds": time.monotonic() - start,
            "stored before": stored, "stored after": len(list(runs.glob("*.json")))}  # fmt: skip


if __name__ == "__main__":
    if os.environ.get("DROPLAB_NETNS") == "loopback":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    main(Path(sys.argv[1]), sys.argv[2])
