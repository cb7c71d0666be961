"""Signals to a study however they arrive: to its whole process group (what a terminal sends on
Ctrl-C), or twice in a row. (The Ray backend's stops: tests/test_ray.py.)

Each step runs ``droplab study`` in a session of its own (its process group), signals it once a
job is under way, and checks that it ends with 128 + the
signal, without a traceback, with every file of its store whole or absent. The same command
runs again for the next step (it resumes, and is stopped again); the last run finishes, with
the numbers of a study never interrupted. The study is a tiny one (two small MLPs, three seeds,
40 epochs on 500 images), registered by the launcher below before the CLI runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from droplab.checkpoint import load as load_checkpoint

LAUNCHER = """
import sys
from droplab.studies import STUDIES, Analysis, Study, Variant
from droplab.verdicts import Hypothesis

BEATS = Hypothesis("dropout beats plain", primary=True)

def analyze(r):
    return Analysis([r.claim(BEATS, "dropout", "plain")], [], {})

STUDIES["tiny"] = Study(
    "tiny", "A tiny study", "Does anything survive a signal?",
    lambda quick: [Variant("plain", {"dropout": (0.0, 0.0)}), Variant("dropout", {"dropout": (0.5, 0.5)})],
    analyze, epochs=40, base={"model": "mlp", "hidden": (32, 16), "batch_size": 50}, hypotheses=(BEATS,),
)
from droplab.cli import main
sys.exit(main(sys.argv[1:]))
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def study_cmd(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", LAUNCHER, "study", "tiny", "--protocol", "lecture", "--seeds", "3",
            "--data-dir", str(data), "--no-verify", "--val-size", "100", "--out", str(out)]  # fmt: skip


def run(cmd) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)


def numbers(out: Path) -> dict:
    """What a study measured: its claims, and per run its key, history and summary less the seconds."""
    report = json.loads((out / "study.json").read_text())
    runs = {
        (name, r["seed"]): (r["key"], r["history"], {k: x for k, x in r["summary"].items() if k != "seconds"})
        for name, v in report["variants"].items()
        for r in v["per_seed"]
    }
    return {"claims": report["claims"], "runs": runs}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The data, and the numbers of the study never interrupted."""
    from conftest import write_dataset

    root = tmp_path_factory.mktemp("signals")
    data = write_dataset(root / "data")
    done = run(study_cmd(data, root / "whole"))
    assert done.returncode == 0, done.stderr
    return data, numbers(root / "whole"), root


def start(cmd) -> subprocess.Popen:
    """In a session of its own: its process group is the study."""
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True
    )


def progress(out: Path) -> set:
    """The checkpoints (each version: a rename gives a new inode) and results in the store."""
    runs = out / "runs"
    return {(p.name, p.stat().st_ino) for p in [*runs.glob("partial/*.pt"), *runs.glob("*.json")] if p.exists()}


def wait_under_way(proc: subprocess.Popen, out: Path, before: set, timeout: float = 120.0) -> None:
    """Until a job has written a checkpoint or a result this run: training is under way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):  # a file renamed or removed meanwhile
            if progress(out) - before:
                return
        assert proc.poll() is None, f"the study ended before it was signalled: {proc.communicate()}"
        time.sleep(0.005)
    raise TimeoutError("no job got under way")


def check_store(out: Path) -> None:
    """Finished results whole; a job under way has a whole checkpoint or none; no half-written file."""
    runs = out / "runs"
    assert not [p.name for p in runs.rglob("*") if ".tmp-" in p.name], "a half-written file was left"
    for path in runs.glob("*.json"):
        assert json.loads(path.read_text())["summary"]
    for path in (runs / "partial").iterdir():
        assert path.suffix == ".pt" and load_checkpoint(path)["step"] >= 1


def to_group(*signals, gap: float = 0.0):
    def send(proc):
        for i, sig in enumerate(signals):
            if i and gap:
                time.sleep(gap)
            os.killpg(proc.pid, sig)  # the session's leader is the parent: its pid is the group's id

    return send


def to_parent(*signals, gap: float = 0.1):
    def send(proc):
        for i, sig in enumerate(signals):
            if i:
                time.sleep(gap)  # most often a signal of its own, not merged with the first
            proc.send_signal(sig)

    return send


def stop_and_resume(setup, steps) -> None:
    data, whole, root = setup
    out = root / "stopped"
    cmd = study_cmd(data, out)
    for what, when, send, code, said in steps:
        before = progress(out) if out.exists() else set()
        proc = start(cmd)
        when(proc, out, before)
        send(proc)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == code, f"{what}: {err}"
        assert said in err and "the same command resumes" in err, f"{what}: {err}"
        assert "Traceback" not in err, f"{what}: {err}"
        check_store(out)
    done = run(cmd)  # the same command, to the end
    assert done.returncode == 0, done.stderr
    assert numbers(out) == whole
    assert list((out / "runs" / "partial").iterdir()) == []  # no job checkpoint left behind


def test_one_process_stops_at_a_safe_point_however_signalled(setup):
    """SIGTERM to the group; then SIGINT twice (the second stops it at once)."""
    stop_and_resume(setup, [
        ("SIGTERM to the group", wait_under_way, to_group(signal.SIGTERM), 143, "interrupted by SIGTERM"),
        ("SIGINT twice to the group", wait_under_way, to_group(signal.SIGINT, signal.SIGINT, gap=0.1), 130,
         "interrupted by SIGINT"),
    ])  # fmt: skip


# --- the stop request itself, in this process -------------------------------------------------


def test_a_second_signal_stops_a_single_process_at_once_and_later_ones_are_ignored(own_handlers):
    from droplab.interrupt import Interrupted, StopRequest

    with pytest.raises(Interrupted, match="interrupted by SIGTERM and stopped at once by a second signal"):
        with StopRequest() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            assert (stop.signum, stop.count) == (signal.SIGTERM, 1)  # recorded only
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("a second signal did not stop it")
    # on its way out with 128 + signum: a late signal is ignored (even while the interpreter finalizes)
    assert signal.getsignal(signal.SIGINT) == signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


def test_a_cluster_driver_only_records_however_many_signals(own_handlers):
    from droplab.interrupt import StopRequest

    before = signal.getsignal(signal.SIGTERM)
    with StopRequest(at_once=False) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert (stop.signum, stop.count) == (signal.SIGINT, 1)
        for _ in range(5):
            os.kill(os.getpid(), signal.SIGTERM)
        assert (stop.signum, stop.count) == (signal.SIGINT, 6)
    assert signal.getsignal(signal.SIGTERM) == before  # no signal ended the work: handlers restored
