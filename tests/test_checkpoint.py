"""Checkpoints, bit-exact resume, stop requests, the divergence guard, run-directory locks."""

import errno
import hashlib
import io
import json
import math
import pickle
import signal

import pytest
import torch

from droplab import atomic, rundir
from droplab import checkpoint as ckpt
from droplab.data import load_fashion_mnist
from droplab.interrupt import Interrupted, StopRequest
from droplab.train import (
    CheckpointError,
    CheckpointWriteError,
    Diverged,
    TrainConfig,
    fit,
    resume,
    run,
)
from droplab.train.loop import _nonfinite_gradient


@pytest.fixture
def tiny(tiny_dir):
    return load_fashion_mnist(tiny_dir, val_size=100, verify=False)


def small(**kw) -> TrainConfig:
    return TrainConfig(**{"hidden": (32, 16), "epochs": 3, "batch_size": 50, "threads": 1, **kw})


# configurations whose every random and stateful piece must survive a checkpoint
CONFIGS = {
    "scratch-fast": dict(),
    "scratch-reference": dict(dropout_impl="reference"),  # masks from torch.rand
    "mlp-everything": dict(
        model="mlp", momentum=0.9, schedule="onecycle", augment=2, max_norm=2.0, drop_last=True,
        batch_size=64, eval_every=2, track_activations=True, epochs=4,  # 7 steps an epoch
    ),  # fmt: skip
    "mlp-batchnorm-adam": dict(model="mlp", norm="batch", optimizer="adam", lr=0.01, weight_decay=1e-4),
}


def stopping_after(stop: StopRequest, steps: int, signum=signal.SIGINT):
    """An on_batch callback that 'receives' a signal after ``steps`` steps."""
    count = 0

    def on_batch(_loss: float) -> None:
        nonlocal count
        count += 1
        if count == steps:
            stop.signum = signum

    return on_batch


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("steps", [1, 7, 10, 23])  # 10: an epoch boundary (500 images, batches of 50)
def test_stop_and_resume_is_bit_identical_to_an_uninterrupted_run(name, steps, tiny, tmp_path):
    cfg = small(**CONFIGS[name])
    whole = fit(cfg, tiny)
    path = tmp_path / "ckpt.pt"
    stop = StopRequest()  # not entered: the test sets its signal by hand
    with pytest.raises(Interrupted) as info:
        fit(cfg, tiny, on_batch=stopping_after(stop, steps), checkpoint=path, stop=stop)
    assert info.value.signum == signal.SIGINT
    resumed = fit(cfg, tiny, checkpoint=path, resume=ckpt.load(path))
    assert resumed.history == whole.history  # floats compared exactly
    assert same_weights(resumed.model, whole.model)
    assert resumed.summary["test_acc"] == whole.summary["test_acc"]


def test_resume_twice_and_from_step_checkpoints(tiny, tmp_path):
    cfg = small(model="mlp", momentum=0.9, checkpoint_every=3)
    whole = fit(cfg, tiny)
    path = tmp_path / "ckpt.pt"
    stop = StopRequest()
    with pytest.raises(Interrupted):
        fit(cfg, tiny, on_batch=stopping_after(stop, 4), checkpoint=path, stop=stop)
    stop = StopRequest()
    with pytest.raises(Interrupted):
        fit(cfg, tiny, on_batch=stopping_after(stop, 12), checkpoint=path, resume=ckpt.load(path), stop=stop)
    state = ckpt.load(path)
    assert state["step"] == 4 + 12 and state["epoch"] == 2
    resumed = fit(cfg, tiny, checkpoint=path, resume=state)
    assert resumed.history == whole.history and same_weights(resumed.model, whole.model)


def test_checkpoint_holds_what_the_issue_lists(tiny, tmp_path):
    path = tmp_path / "c.pt"
    fit(small(epochs=1, checkpoint_every=4), tiny, checkpoint=path)
    state = ckpt.load(path)
    for key in ("model", "optimizer", "epoch", "step", "rng", "shuffle", "augment", "config", "history"):
        assert key in state
    assert set(state["rng"]) == {"torch", "numpy", "python"}
    assert state["epoch"] == 2 and state["step"] == 10 and len(state["history"]) == 1


def test_a_checkpoint_for_another_configuration_is_refused(tiny, tmp_path):
    path = tmp_path / "c.pt"
    fit(small(epochs=1), tiny, checkpoint=path)
    state = ckpt.load(path)
    with pytest.raises(CheckpointError, match=r"another configuration \(hidden: checkpoint \[32, 16\], run \[64, 16\]"):
        fit(small(epochs=1, hidden=(64, 16)), tiny, resume=state)
    state["config"]["hidden"] = (64, 16)  # a config that claims the other architecture
    shapes = r"lin1.weight: checkpoint \(32, 784\), model \(64, 784\); lin1.bias"
    with pytest.raises(CheckpointError, match="does not fit the configured model: " + shapes):
        fit(small(epochs=1, hidden=(64, 16)), tiny, resume=state)
    with pytest.raises(CheckpointError, match="checkpoint lacks optimizer"):
        fit(small(epochs=1), tiny, resume={k: v for k, v in ckpt.load(path).items() if k != "optimizer"})


def test_damaged_and_foreign_files_are_refused_clearly(tiny, tmp_path):
    path = tmp_path / "c.pt"
    fit(small(epochs=1), tiny, checkpoint=path)
    raw = path.read_bytes()
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    cases = {
        "flipped.pt": (bytes(flipped), "is damaged: SHA-256 of its contents is"),
        "truncated.pt": (raw[: len(raw) // 3], "is damaged"),
        "empty.pt": (b"", "is not a droplab checkpoint"),
        "plain-torch.pt": (b"PK\x03\x04 a zip file", "is not a droplab checkpoint"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=message):
            ckpt.load(tmp_path / name)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        ckpt.load(tmp_path / "missing.pt")


class _Exploit:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['DROPLAB_PWNED'], 'w').write('ran')",))


def _wrap(body: bytes) -> bytes:
    return b"droplab-checkpoint 1 %s\n" % hashlib.sha256(body).hexdigest().encode() + body


def test_a_checkpoint_never_runs_code(tmp_path, monkeypatch):
    """A valid header and digest around a pickle that would run code: refused, the code not run."""
    marker = tmp_path / "pwned"
    monkeypatch.setenv("DROPLAB_PWNED", str(marker))
    zipped = io.BytesIO()
    torch.save({"model": _Exploit()}, zipped)  # torch's zip format, a malicious pickle inside
    for body in (pickle.dumps({"model": _Exploit()}, protocol=2), zipped.getvalue()):
        (tmp_path / "evil.pt").write_bytes(_wrap(body))
        with pytest.raises(CheckpointError, match="cannot be read safely") as err:
            ckpt.load(tmp_path / "evil.pt")
        assert "weights_only" not in str(err.value) and "do not load it" in str(err.value)  # no unsafe advice
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Exploit()))  # the exploit is real: unpickled without the guard, it runs
    assert marker.read_text() == "ran"


def test_rng_state_round_trips():
    import random

    import numpy as np

    state = ckpt.rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all() and a[2] == b[2]


# --- divergence -------------------------------------------------------------------------


def test_nonfinite_loss_stops_before_the_step_and_keeps_the_last_checkpoint(tiny, tmp_path, monkeypatch):
    import droplab.train.state as state_module

    built = []
    real_build = state_module.build_model
    monkeypatch.setattr(state_module, "build_model", lambda *a, **k: built.append(real_build(*a, **k)) or built[-1])
    steps = []

    def poison(_loss: float) -> None:  # after step 13 (epoch 2), a weight becomes NaN
        steps.append(_loss)
        if len(steps) == 13:
            with torch.no_grad():
                next(built[0].parameters())[0, 0] = math.nan

    path = tmp_path / "c.pt"
    with pytest.raises(Diverged, match=r"diverged at epoch 2, step 14: loss = nan; try a smaller learning rate"):
        fit(small(model="mlp"), tiny, on_batch=poison, checkpoint=path)
    state = ckpt.load(path)  # the end of epoch 1: finite, resumable
    assert state["epoch"] == 2 and state["step"] == 10
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_huge_learning_rate_diverges_with_a_message(tiny):
    with pytest.raises(Diverged) as info:
        fit(small(model="plain", lr=1e6), tiny)
    assert info.value.step >= 1 and "smaller learning rate than 1e+06 (for example 100000)" in str(info.value)


def test_nonfinite_gradient_is_named():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    model(torch.ones(1, 3)).sum().backward()
    assert _nonfinite_gradient(model) is None
    model[1].weight.grad[0, 0] = math.inf
    assert _nonfinite_gradient(model) == "gradient of 1.weight is inf"
    model[1].weight.grad[0, 0] = -math.inf
    model[0].weight.grad[1, 2] = math.inf  # +inf and -inf: their sum is NaN, still named
    assert _nonfinite_gradient(model) == "gradient of 0.weight is inf"
    model[0].weight.grad[1, 2] = math.nan
    assert _nonfinite_gradient(model) == "gradient of 0.weight is nan"


def test_large_finite_gradients_are_not_divergence():
    """Gradients near float32's largest value sum past it: finite, so the run goes on."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    model(torch.ones(1, 3)).sum().backward()
    for p in model.parameters():
        p.grad.fill_(3e38)
    assert _nonfinite_gradient(model) is None


# --- run directories ----------------------------------------------------------------------


def test_run_is_interrupted_then_resumed_in_its_directory(tiny, tmp_path, monkeypatch):
    cfg = small(model="mlp", momentum=0.9)
    whole = run(cfg, tiny, out=tmp_path / "whole")
    import droplab.train.directory as directory_module

    real_fit = directory_module.fit

    def fit_with_signal(*args, **kw):
        kw["on_batch"] = stopping_after(kw["stop"], 15, signal.SIGTERM)
        return real_fit(*args, **kw)

    monkeypatch.setattr(directory_module, "fit", fit_with_signal)
    with pytest.raises(Interrupted):
        run(cfg, tiny, out=tmp_path / "cut")
    monkeypatch.setattr(directory_module, "fit", real_fit)
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
    assert summary["last_checkpoint"] == str(tmp_path / "cut" / "checkpoint.pt")  # where it goes on from
    assert not (tmp_path / "cut" / "metrics.csv").exists()
    resumed = resume(tmp_path / "cut", tiny)
    for name in ("metrics.csv",):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert same_weights(resumed.model, whole.model)
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["status"] == "finished"
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()  # a finished run keeps model.pt only
    with pytest.raises(rundir.RunDirError, match="holds a finished run: nothing to resume"):
        resume(tmp_path / "cut", tiny)


def test_a_directory_in_use_cannot_be_resumed_or_claimed(tmp_path):
    d = rundir.claim_dir(tmp_path / "r")
    (d / "config.json").write_text("{}")
    with pytest.raises(rundir.RunDirError, match="in use by another droplab process"):
        rundir.lock_dir(d)
    rundir.release_dir(d)
    rundir.lock_dir(d)  # released: now it can be taken over
    rundir.release_dir(d)
    with pytest.raises(rundir.RunDirError, match="already holds results"):
        rundir.claim_dir(d)
    with pytest.raises(rundir.RunDirError, match="not a droplab run directory"):
        rundir.lock_dir(tmp_path)


def test_not_enough_space_is_an_error_before_training(tiny, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(rundir.RunDirError, match=r"not enough space in .*: 0.0 MiB free, .* need about"):
        run(small(), tiny, out=tmp_path / "full")
    assert not (tmp_path / "full").exists()  # nothing left behind: the claim is undone


def test_disk_full_mid_run_keeps_the_previous_checkpoint(tiny, tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    calls = {"n": 0}
    real = atomic.atomic_write

    def failing(target, write):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: as if the disk filled up
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(target, write)

    monkeypatch.setattr(ckpt, "atomic_write", failing)
    with pytest.raises(CheckpointWriteError, match=r"cannot write .*c.pt: No space left on device; the previous one"):
        fit(small(), tiny, checkpoint=path)
    assert ckpt.load(path)["epoch"] == 2  # the first, intact


# --- a checkpoint whose digest matches but whose contents are wrong ------------------------


def _set(state: dict, path: str, value) -> None:
    *parents, last = path.split("/")
    def key(container, part: str):
        return int(part) if isinstance(container, list) or (part.isdigit() and part not in container) else part

    for part in parents:
        state = state[key(state, part)]
    state[key(state, last)] = value


def _nan_first(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = math.nan
    return t


# (what is changed, how, the field the error must name: each found by a review or a fuzzer);
# the run: 3 epochs of 10 steps,
# momentum (so the optimizer has buffers), stopped at epoch 2 after 4 steps
WRONG_FIELDS = [
    ("epoch", lambda s: 99, "'epoch' is 99: expected an integer from 1 to 4"),
    ("epoch", lambda s: "2", "'epoch' is '2'"),
    ("step", lambda s: s["step"] + 1, "'step' is 15 with next_i 200 in epoch 2: expected 14"),
    ("next_i", lambda s: 13, "'next_i' is 13: expected a multiple of the batch size 50"),
    ("next_i", lambda s: 10**6, "'next_i' is 1000000"),
    ("order", lambda s: s["order"][:-1], "'order' is a torch.int64 tensor of shape (499,)"),
    ("order", lambda s: torch.zeros(500, dtype=torch.int64), "'order' is not a permutation of the 500"),
    ("order", lambda s: None, "'order' is missing in the middle of an epoch"),
    ("loss_sum", lambda s: math.nan, "'loss_sum' is nan"),
    ("loss_sum", lambda s: -1.0, "'loss_sum' is -1.0"),
    ("seconds", lambda s: "soon", "'seconds' is 'soon'"),
    ("threads", lambda s: 0, "'threads' is 0"),
    ("history", lambda s: [], "'history' has 0 rows: expected 1"),
    ("history/0/val_acc", lambda s: 1e308, "'history[0].val_acc' is 1e+308: expected a finite number in [0, 1]"),
    ("history/0/val_loss", lambda s: math.nan, "'history[0].val_loss' is nan"),
    ("history/0/epoch", lambda s: 7, "'history[0].epoch' is 7: expected 1"),
    ("history/0", lambda s: "row", "'history[0]' is not a metrics row"),
    ("model/lin1.weight", lambda s: _nan_first(s["model"]["lin1.weight"]), "'model.lin1.weight' holds NaN"),
    ("model/lin1.weight", lambda s: s["model"]["lin1.weight"].double(), "'model.lin1.weight' is a torch.float64"),
    ("model/lin1.weight", lambda s: [[0.0]], "lin1.weight: checkpoint a list, model (32, 784)"),
    ("optimizer/state/0/momentum_buffer", lambda s: torch.zeros(3), "'optimizer.state[0].momentum_buffer' is a"),
    ("optimizer/state/1/momentum_buffer", lambda s: _nan_first(s["optimizer"]["state"][1]["momentum_buffer"]),
     "'optimizer.state[1].momentum_buffer' holds NaN"),
    ("optimizer/param_groups/0/lr", lambda s: math.inf, "'optimizer.param_groups[0].lr' is inf"),
    ("optimizer/param_groups/0/params", lambda s: [0, 1], "'optimizer.param_groups[0].params' is [0, 1]: the run's"),
    ("optimizer/param_groups/0/lr", lambda s: 0.5, "'optimizer.param_groups[0].lr' is 0.5: the run's is 0.1"),
    ("optimizer/param_groups/0/lr", lambda s: "x", "'optimizer.param_groups[0].lr' is 'x'"),
    ("optimizer/param_groups", lambda s: s["optimizer"]["param_groups"] + [5], "'optimizer.param_groups' are not"),
    ("rng/python/0", lambda s: 7, "'rng' holds a state the generators refuse"),
    ("rng/python/1", lambda s: [2**40] * 625, "'rng' holds a state the generators refuse"),
    ("rng/numpy/1", lambda s: torch.full((624,), -1, dtype=torch.int64), "'rng' holds a state the generators refuse"),
    ("shuffle", lambda s: torch.full_like(s["shuffle"], 255), "'shuffle' is not a generator's state"),
    ("optimizer/state/1", lambda s: {}, "'optimizer.state[1]' holds nothing: expected momentum_buffer"),
    ("optimizer/state", lambda s: {0: s["optimizer"]["state"][0]}, "'optimizer.state' has entries for parameters 0"),
    ("threads", lambda s: -1, "'threads' is -1"),
    ("optimizer", lambda s: [], "'optimizer' is not an optimizer's state"),
    ("scheduler", lambda s: {"last_epoch": 3}, "'scheduler' holds a schedule's state"),
    ("shuffle", lambda s: torch.zeros(16, dtype=torch.uint8), "'shuffle' is a torch.uint8 tensor of shape (16,)"),
    ("augment", lambda s: s["augment"].float(), "'augment' is a torch.float32 tensor"),
    ("rng/torch", lambda s: s["rng"]["torch"][:100], "'rng.torch' is a torch.uint8 tensor of shape (100,)"),
    ("rng/numpy/1", lambda s: s["rng"]["numpy"][1][:5], "'rng.numpy[1]' is a torch.int64 tensor of shape (5,)"),
    ("rng/numpy/2", lambda s: 10**9, "'rng.numpy' has a position"),
    ("rng/python/1", lambda s: [1, 2, 3], "'rng.python' is not Python's Mersenne Twister state"),
    ("rng", lambda s: {}, "'rng' is not the generators' state"),
    ("data_sha256", lambda s: "0" * 64, "'data_sha256' is 0000000000000000…: the run was trained on other data"),
    ("config", lambda s: "x", "'config' is a str"),
]


@pytest.mark.parametrize("field, change, message", WRONG_FIELDS,
                         ids=[f"{f}-{i}" for i, (f, *_) in enumerate(WRONG_FIELDS)])  # fmt: skip
def test_a_checkpoint_with_a_valid_digest_and_wrong_contents_is_refused_naming_the_field(
    field, change, message, tiny, tmp_path
):
    cfg = small(momentum=0.9)
    stop = StopRequest()
    with pytest.raises(Interrupted):
        fit(cfg, tiny, checkpoint=tmp_path / "c.pt", stop=stop, on_batch=stopping_after(stop, 14))
    state = ckpt.load(tmp_path / "c.pt")
    assert (state["epoch"], state["next_i"], state["step"]) == (2, 200, 14)
    fit(cfg, tiny, resume=ckpt.load(tmp_path / "c.pt"))  # the untouched checkpoint is accepted
    _set(state, field, change(state))
    ckpt.save(tmp_path / "bad.pt", state)  # a matching digest around the wrong contents
    with pytest.raises(CheckpointError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
                       .replace("+", r"\+").replace("]", r"\]")):  # fmt: skip
        fit(cfg, tiny, resume=ckpt.load(tmp_path / "bad.pt"))


def test_a_checkpoint_without_the_data_digest_is_refused(tiny, tmp_path):
    fit(small(epochs=1), tiny, checkpoint=tmp_path / "c.pt")
    state = ckpt.load(tmp_path / "c.pt")
    del state["data_sha256"]
    with pytest.raises(CheckpointError, match="checkpoint lacks data_sha256: not written by this version"):
        fit(small(epochs=1), tiny, resume=state)


def test_resume_refuses_other_data_naming_both(tiny_dir, tmp_path):
    from conftest import write_dataset

    from droplab.train import DataMismatch

    data = load_fashion_mnist(tiny_dir, val_size=100, verify=False)
    run(small(epochs=2), data, out=tmp_path / "r")
    (tmp_path / "r" / "summary.json").write_text('{"status": "interrupted"}')  # as if stopped before a checkpoint
    other = load_fashion_mnist(write_dataset(tmp_path / "other", n_train=600, n_test=150), val_size=100, verify=False)
    with pytest.raises(DataMismatch) as err:
        resume(tmp_path / "r", other)
    text = str(err.value)
    assert data.digest in text and other.digest in text and str(tiny_dir) in text and str(tmp_path / "other") in text
    assert resume(tmp_path / "r", data).summary["epochs"] == 2  # the same data goes on


def test_a_run_that_fails_before_anything_to_go_on_from_leaves_no_directory(tiny, tmp_path, monkeypatch):
    import droplab.train.directory as train

    def fails(directory, *args):
        assert (directory / "config.json").is_file()  # the failure comes after the claim and config.json
        raise RuntimeError("failed before the first checkpoint")

    monkeypatch.setattr(train, "_train_in", fails)
    with pytest.raises(RuntimeError):
        run(small(epochs=1), tiny, out=tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError):
        run(small(epochs=1), tiny, out=tmp_path / "empty")
    assert (tmp_path / "empty").is_dir() and not list((tmp_path / "empty").iterdir())  # given empty, left empty
    with pytest.raises(RuntimeError):
        run(small(epochs=1), tiny, runs_root=tmp_path / "runs")
    assert not list((tmp_path / "runs").iterdir())


def test_a_run_with_something_to_go_on_from_is_kept(tiny, tmp_path, monkeypatch):
    import droplab.train.directory as train

    def interrupted(directory, *args):
        atomic.write_json(directory / "summary.json", {"status": "interrupted"})
        raise Interrupted(signal.SIGINT, "before the first step")

    monkeypatch.setattr(train, "_train_in", interrupted)
    with pytest.raises(Interrupted):
        run(small(epochs=1), tiny, out=tmp_path / "r")
    assert {p.name for p in (tmp_path / "r").iterdir()} == {".droplab", "config.json", "summary.json"}


@pytest.mark.parametrize("name", ["checkpoint.pt", "config.json", "summary.json"])
def test_a_fifo_in_a_run_directory_is_refused_without_blocking(name, tiny, tmp_path):
    """Files others may have put in a shared run directory are read only when regular: a FIFO
    would block the reader forever (the test would time out)."""
    import os

    run(small(epochs=1), tiny, out=tmp_path / "r")
    (tmp_path / "r" / "summary.json").write_text('{"status": "interrupted"}')
    target = tmp_path / "r" / name
    target.unlink(missing_ok=True)
    os.mkfifo(target)
    if name == "summary.json":  # not a finished run's (that one is a regular file): the run goes on
        assert resume(tmp_path / "r", tiny).summary["epochs"] == 1
        return
    with pytest.raises((CheckpointError, rundir.RunDirError)) as err:
        resume(tmp_path / "r", tiny)
    assert "not a regular file" in str(err.value) or "not a droplab run directory" in str(err.value)


# a run with a schedule and Adam: the schedule's state and Adam's buffers
SCHEDULED_WRONG = [
    ("scheduler/last_epoch", lambda s: 10**6, "'scheduler.last_epoch' is 1000000: expected 14 after 14 steps"),
    ("scheduler/total_steps", lambda s: 3, "'scheduler.total_steps' is 3: the run's is 30"),
    ("scheduler/base_lrs", lambda s: [math.nan], "'scheduler.base_lrs' is [nan]"),
    ("scheduler/_last_lr", lambda s: ["x"], "'scheduler._last_lr' is 'x'"),
    ("optimizer/param_groups/0/lr", lambda s: 1e300, "'optimizer.param_groups[0].lr' is 1e+300"),
    ("optimizer/state/0", lambda s: {k: v for k, v in s["optimizer"]["state"][0].items() if k != "exp_avg"},
     "'optimizer.state[0]' holds step, exp_avg_sq: expected exp_avg, exp_avg_sq, step"),
    ("optimizer/state/0/step", lambda s: torch.tensor(99.0), "'optimizer.state[0].step' is 99.0: the run has taken 14"),
]


@pytest.mark.parametrize("field, change, message", SCHEDULED_WRONG, ids=[f for f, *_ in SCHEDULED_WRONG])
def test_a_schedule_and_adam_state_are_checked_too(field, change, message, tiny, tmp_path):
    cfg = small(optimizer="adam", lr=0.01, schedule="onecycle")
    stop = StopRequest()
    with pytest.raises(Interrupted):
        fit(cfg, tiny, checkpoint=tmp_path / "c.pt", stop=stop, on_batch=stopping_after(stop, 14))
    fit(cfg, tiny, resume=ckpt.load(tmp_path / "c.pt"))  # the untouched checkpoint is accepted
    state = ckpt.load(tmp_path / "c.pt")
    _set(state, field, change(state))
    with pytest.raises(CheckpointError) as err:
        fit(cfg, tiny, resume=state)
    assert message in str(err.value)


def test_the_checkpoint_schema_is_train_states_fields(tiny, tmp_path):
    """TrainState's fields are a checkpoint's, in the order droplab has always written them: the
    checkpoints of earlier versions load."""
    from droplab.train.state import FIELDS

    assert FIELDS == ("config", "epoch", "next_i", "order", "loss_sum", "step", "history", "seconds", "model",
                      "optimizer", "scheduler", "shuffle", "augment", "rng", "threads", "data_sha256",
                      "best_epoch", "best_weights")  # fmt: skip
    fit(small(epochs=1), tiny, checkpoint=tmp_path / "c.pt")
    assert tuple(ckpt.load(tmp_path / "c.pt")) == FIELDS


# --- what a checkpoint's configuration must match ---------------------------------------


def _stopped(cfg: TrainConfig, tiny, path, steps: int = 14) -> dict:
    stop = StopRequest()
    with pytest.raises(Interrupted):
        fit(cfg, tiny, checkpoint=path, stop=stop, on_batch=stopping_after(stop, steps))
    return ckpt.load(path)


def test_a_checkpoint_written_before_a_field_existed_resumes(tiny, tmp_path):
    """A field the checkpoint's configuration lacks is at its default (a new field's default is what
    runs computed before it); another value of a field is still refused, naming it."""
    cfg = small()
    whole = fit(cfg, tiny)
    state = _stopped(cfg, tiny, tmp_path / "c.pt")
    for name in ("augment", "eval_every", "track_activations"):  # as an older droplab wrote it
        del state["config"][name]
    resumed = fit(cfg, tiny, resume=state)
    assert resumed.history == whole.history and same_weights(resumed.model, whole.model)
    state = ckpt.load(tmp_path / "c.pt")
    del state["config"]["augment"]
    with pytest.raises(CheckpointError, match=r"another configuration \(augment: checkpoint 0, run 2\)"):
        fit(small(augment=2), tiny, resume=state)
    state = ckpt.load(tmp_path / "c.pt")
    state["config"]["augment"] = 1
    with pytest.raises(CheckpointError, match=r"another configuration \(augment: checkpoint 1, run 0\)"):
        fit(cfg, tiny, resume=state)


def test_the_run_only_fields_may_change_on_resume_bit_for_bit(tiny, tmp_path):
    """threads and checkpoint_every are no part of what a run computes: a checkpoint written with
    other values goes on, and ends as the uninterrupted run."""
    import dataclasses

    from droplab.train.config import RUN_ONLY

    assert RUN_ONLY == ("threads", "checkpoint_every")
    cfg = small(model="mlp", momentum=0.9)
    whole = fit(cfg, tiny)
    state = _stopped(dataclasses.replace(cfg, checkpoint_every=4), tiny, tmp_path / "c.pt")
    resumed = fit(dataclasses.replace(cfg, checkpoint_every=3), tiny, resume=state, checkpoint=tmp_path / "c.pt")
    assert resumed.history == whole.history and same_weights(resumed.model, whole.model)


def test_every_field_of_the_checkpoint_is_checked(tiny, tmp_path):
    """Each field of TrainState (a checkpoint's schema), given a value no field takes, is refused
    naming it: a field added to the schema needs its check in check_state."""
    from droplab.train.state import FIELDS

    cfg = small(momentum=0.9)
    _stopped(cfg, tiny, tmp_path / "c.pt")
    for name in FIELDS:
        state = ckpt.load(tmp_path / "c.pt")
        state[name] = "corrupt"
        with pytest.raises(CheckpointError) as err:
            fit(cfg, tiny, resume=state)
        assert name in str(err.value), (name, str(err.value))
