"""SIGKILL a training process at random moments, resume it, and compare with an uninterrupted run.

Also SIGINT and SIGTERM: a checkpoint, ``summary.json`` marked interrupted, exit 130 / 143.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

TINY = ["--hidden", "32", "16", "--batch-size", "50", "--val-size", "100", "--no-verify", "--threads", "1"]
EPOCHS = "25"  # 10 steps an epoch on the 500 training images of the tiny data set


def train_cmd(data_dir, *args):
    return [sys.executable, "-m", "droplab", "train", "--data-dir", str(data_dir), *args]


def start(cmd):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, proc, timeout=120.0) -> bool:
    """Until ``path`` exists (True) or the process ends (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if proc.poll() is not None:
            return path.exists()
        time.sleep(0.002)
    raise TimeoutError(f"{path} did not appear")


def temp_files(directory):
    return [n for n in os.listdir(directory) if ".tmp-" in n]


def weights(path):
    return torch.load(path, weights_only=True)


def same_run(a, b) -> bool:
    if (a / "metrics.csv").read_bytes() != (b / "metrics.csv").read_bytes():
        return False
    wa, wb = weights(a / "model.pt"), weights(b / "model.pt")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def data_and_reference(tmp_path_factory):
    from conftest import write_dataset

    root = tmp_path_factory.mktemp("kill")
    data = write_dataset(root / "data")
    ref = root / "reference"
    proc = subprocess.run(
        train_cmd(data, "--model", "mlp", "--momentum", "0.9", "--epochs", EPOCHS, "--out", str(ref), *TINY),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return data, ref, root


def test_sigkill_at_random_moments_then_resume_matches_bit_for_bit(data_and_reference):
    """Each trial: start a run (a checkpoint every 3 steps), SIGKILL it at a random moment —
    after a random delay, or the instant a checkpoint's temporary file appears (mid-write) —,
    resume, maybe kill again, resume to the end; metrics.csv and model.pt must equal the
    uninterrupted run's."""
    data, ref, root = data_and_reference
    rng = random.Random(20261127)
    kills = {"random moment": 0, "mid-checkpoint write": 0}
    landed_mid_write, trials = 0, 6
    for trial in range(trials):
        out = root / f"trial{trial}"
        args = ["--model", "mlp", "--momentum", "0.9", "--epochs", EPOCHS, "--checkpoint-every", "3", *TINY]
        cmd, killed = train_cmd(data, *args, "--out", str(out)), 0
        while True:
            proc = start(cmd)
            if killed < 2 and wait_for(out / "config.json", proc):  # up to two kills, then run to the end
                mid_write = rng.random() < 0.5
                if mid_write:  # kill the moment a checkpoint is being written
                    while proc.poll() is None and not temp_files(out):
                        pass
                else:
                    time.sleep(rng.uniform(0.0, 1.5))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    proc.stdout.close(), proc.stderr.close()
                    kills["mid-checkpoint write" if mid_write else "random moment"] += 1
                    landed_mid_write += bool(temp_files(out))  # the rename never happened
                    cmd, killed = train_cmd(data, "--resume", str(out), "--no-verify"), killed + 1
                    continue
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            break
        assert json.loads((out / "summary.json").read_text())["status"] == "finished"
        assert same_run(out, ref), f"trial {trial}: resumed run differs from the uninterrupted one"
        assert not temp_files(out), "stale temporary files were left"
    total = sum(kills.values())
    print(
        f"\nSIGKILL: {total} kill points ({kills['random moment']} at random moments, "
        f"{kills['mid-checkpoint write']} aimed at a checkpoint write, {landed_mid_write} left a half-written "
        f"temporary file) over {trials} runs; every resumed run matched the uninterrupted one bit for bit"
    )
    assert total >= trials and landed_mid_write >= 1


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_stop_at_a_safe_point(sig, code, data_and_reference):
    data, ref, root = data_and_reference
    out = root / f"signal{int(sig)}"
    proc = start(train_cmd(data, "--model", "mlp", "--momentum", "0.9", "--epochs", EPOCHS, "--out", str(out), *TINY))
    assert wait_for(out / "checkpoint.pt", proc)  # training is under way
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"interrupted by {sig.name}" in err and f"resume with: droplab train --resume {out}" in err
    assert "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == sig.name
    done = subprocess.run(train_cmd(data, "--resume", str(out), "--no-verify"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert same_run(out, ref)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130)])
def test_a_signal_twice_to_the_process_group_stops_at_a_safe_point_too(sig, code, data_and_reference):
    """What a terminal sends on Ctrl-C, Ctrl-C: the signal to the whole process group, twice in a
    row. The first stops the run after its step; a second that comes before it is out stops it at
    once (the checkpoint being written is dropped whole), one that comes later is ignored. Either
    way: 128 + the signal, no traceback, and --resume ends as the uninterrupted run."""
    data, ref, root = data_and_reference
    out = root / f"group-twice{int(sig)}"
    cmd = train_cmd(data, "--model", "mlp", "--momentum", "0.9", "--epochs", EPOCHS, "--out", str(out), *TINY)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert wait_for(out / "checkpoint.pt", proc)  # training is under way
    os.killpg(proc.pid, sig)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"interrupted by {sig.name}" in err and "Traceback" not in err, err
    assert not temp_files(out)
    done = subprocess.run(train_cmd(data, "--resume", str(out), "--no-verify"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert same_run(out, ref)
