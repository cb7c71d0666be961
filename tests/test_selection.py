"""The epoch a run ends with (select), per-image test results, d2l's split, the metrics before an
epoch's last step, and the test set read only by a run's final evaluation."""

import dataclasses
import math
import signal

import numpy as np
import pytest
import torch

from droplab import checkpoint as ckpt
from droplab.data import load_fashion_mnist, read_idx
from droplab.interrupt import Interrupted, StopRequest
from droplab.train import CheckpointError, ConfigError, TrainConfig, evaluate, fit
from droplab.train.loop import training_set


@pytest.fixture
def tiny(tiny_dir):
    return load_fashion_mnist(tiny_dir, val_size=100, verify=False)  # 500 training, 100 validation, 200 test


def small(**kw) -> TrainConfig:
    return TrainConfig(**{"hidden": (32, 16), "epochs": 3, "batch_size": 50, "threads": 1, **kw})


# at lr 1.0 the toy task's validation accuracy, by epoch: .63 .54 .75 .80 .85 .86 .86 .86 (best: epoch 6, tied after)
TIED = dict(lr=1.0, epochs=8)


def same_weights(a, b) -> bool:
    sa = a if isinstance(a, dict) else a.state_dict()
    sb = b if isinstance(b, dict) else b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def without_seconds(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "seconds"}


def stopping_after(stop: StopRequest, steps: int):
    count = 0

    def on_batch(_loss: float) -> None:
        nonlocal count
        count += 1
        if count == steps:
            stop.signum = signal.SIGINT

    return on_batch


# --- select -----------------------------------------------------------------------------


def test_last_selects_the_last_epoch_and_the_test_results_are_per_image(tiny):
    res = fit(small(), tiny)
    assert res.summary["best_epoch"] == 3 == res.history[-1]["epoch"]
    assert res.summary["val_acc"] == res.history[-1]["val_acc"]
    correct = res.test_correct
    assert correct.dtype == np.bool_ and correct.shape == (len(tiny.test_y),)
    assert correct.mean() == res.summary["test_acc"]  # exactly: the same evaluation
    res.model.eval()
    with torch.no_grad():
        assert np.array_equal(correct, (res.model(tiny.test_x).argmax(1) == tiny.test_y).numpy())


def test_best_val_selects_the_earliest_best_epoch_and_its_weights(tiny):
    res = fit(small(select="best_val", **TIED), tiny)
    accs = [row["val_acc"] for row in res.history]
    best = accs.index(max(accs)) + 1
    assert accs.count(max(accs)) > 1 and best < len(accs), "the case needs a tie on the best, before the last epoch"
    assert res.summary["best_epoch"] == best
    row = res.history[best - 1]
    for k in ("train_loss", "train_acc", "val_loss", "val_acc", "train_loss_eval"):
        assert res.summary[k] == row[k], k
    assert res.summary["gap"] == row["val_loss"] - row["train_loss_eval"]
    # the same run stopped at that epoch: its weights and test results, bit for bit
    short = fit(small(**{**TIED, "epochs": best}), tiny)
    assert same_weights(res.model, short.model)
    for k in ("test_acc", "test_loss"):
        assert res.summary[k] == short.summary[k], k
    assert np.array_equal(res.test_correct, short.test_correct)
    assert res.test_correct.mean() == res.summary["test_acc"]
    # training itself is the same as under "last": only which weights end the run differs
    last = fit(small(**TIED), tiny)
    assert last.history == res.history and last.summary["best_epoch"] == TIED["epochs"]


@pytest.mark.parametrize("steps", [3, 10, 34, 40, 65])  # 10 steps an epoch: mid-epoch, boundaries, after the best
def test_best_val_resumes_bit_for_bit(steps, tiny, tmp_path):
    cfg = small(select="best_val", model="mlp", momentum=0.9, **TIED)
    whole = fit(cfg, tiny)
    path, stop = tmp_path / "c.pt", StopRequest()
    with pytest.raises(Interrupted):
        fit(cfg, tiny, on_batch=stopping_after(stop, steps), checkpoint=path, stop=stop)
    saved = ckpt.load(path)
    if saved["history"]:
        assert saved["best_epoch"] == max(saved["history"], key=lambda r: r["val_acc"])["epoch"]
        assert saved["best_weights"].keys() == whole.model.state_dict().keys()
    else:
        assert saved["best_epoch"] is None and saved["best_weights"] is None
    resumed = fit(cfg, tiny, checkpoint=path, resume=saved)
    assert resumed.history == whole.history
    assert without_seconds(resumed.summary) == without_seconds(whole.summary)
    assert same_weights(resumed.model, whole.model)  # the kept weights, put back
    assert np.array_equal(resumed.test_correct, whole.test_correct)
    assert same_weights(ckpt.load(path)["best_weights"], whole.model)  # the last checkpoint holds the same copy


def test_kept_weights_in_a_checkpoint_are_checked(tiny, tmp_path):
    cfg = small(select="best_val", **TIED)
    path, stop = tmp_path / "c.pt", StopRequest()
    with pytest.raises(Interrupted):
        fit(cfg, tiny, on_batch=stopping_after(stop, 35), checkpoint=path, stop=stop)
    state = ckpt.load(path)
    state["best_epoch"] = 1 if state["best_epoch"] != 1 else 2
    with pytest.raises(CheckpointError, match="best_epoch.*history's best validation accuracy"):
        fit(cfg, tiny, resume=state)
    state = ckpt.load(path)
    del state["best_weights"], state["best_epoch"]  # an older checkpoint: none kept, but epochs were evaluated
    with pytest.raises(CheckpointError, match="best_epoch"):
        fit(cfg, tiny, resume=state)
    state = ckpt.load(path)
    state["best_weights"][next(iter(state["best_weights"]))] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="best_weights"):
        fit(cfg, tiny, resume=state)


def test_a_checkpoint_without_the_kept_fields_resumes_under_last(tiny, tmp_path):
    """Checkpoints written before best_epoch and best_weights existed: absent means none kept."""
    cfg = small()
    whole = fit(cfg, tiny)
    path, stop = tmp_path / "c.pt", StopRequest()
    with pytest.raises(Interrupted):
        fit(cfg, tiny, on_batch=stopping_after(stop, 14), checkpoint=path, stop=stop)
    state = ckpt.load(path)
    del state["best_epoch"], state["best_weights"]
    resumed = fit(cfg, tiny, resume=state)
    assert resumed.history == whole.history and same_weights(resumed.model, whole.model)
    state = ckpt.load(path)
    state["best_epoch"] = 1  # under "last" nothing is kept
    with pytest.raises(CheckpointError, match="best_epoch"):
        fit(cfg, tiny, resume=state)


# --- split d2l ----------------------------------------------------------------------------


def test_d2l_trains_on_every_training_image_and_validates_on_the_test_set(tiny, tiny_dir):
    cfg = small(split="d2l")
    x, y = training_set(cfg, tiny)
    assert torch.equal(x, torch.cat([tiny.train_x, tiny.val_x]))  # the training split, then the validation split
    assert torch.equal(y, torch.cat([tiny.train_y, tiny.val_y]))
    images = read_idx(tiny_dir / "train-images-idx3-ubyte.gz", 3).reshape(-1, 784).astype(np.float32) / 255.0
    assert sorted(map(bytes, x.numpy())) == sorted(map(bytes, images))  # the file's images, each once
    steps = []
    res = fit(cfg, tiny, on_batch=steps.append)
    assert len(steps) == 3 * math.ceil(600 / 50)
    last = res.history[-1]
    assert (last["val_loss"], last["val_acc"]) == (res.summary["test_loss"], res.summary["test_acc"])
    assert res.summary["best_epoch"] == 3


def test_d2l_refuses_selecting_on_the_test_set():
    with pytest.raises(ConfigError, match="select = 'best_val' is invalid: expected last when split is d2l"):
        small(split="d2l", select="best_val").validate()
    small(split="d2l").validate()
    with pytest.raises(ConfigError, match="split"):
        small(split="all").validate()


def test_the_new_fields_at_their_defaults_keep_job_keys():
    from droplab.studies.jobs import canonical

    assert canonical({"train": small().to_dict()}) == canonical({"train": {**small().to_dict(), "select": "last",
                                                                            "split": "droplab"}})  # fmt: skip
    assert "select" not in canonical({"train": small().to_dict()})["train"]


# --- metrics before an epoch's last step ------------------------------------------------------


@pytest.mark.parametrize("extra", [dict(), dict(model="mlp", norm="batch", dropout_impl="reference", eval_every=2)])
def test_metrics_before_the_last_step_change_nothing_the_run_computes(extra, tiny):
    cfg = small(**extra)
    plain = fit(cfg, tiny)
    rng_plain = torch.get_rng_state()
    measured = fit(dataclasses.replace(cfg, eval_before_last_step=True), tiny)
    assert torch.equal(torch.get_rng_state(), rng_plain)  # the dropout masks' generator: not drawn from
    assert same_weights(plain.model, measured.model)
    assert without_seconds(plain.summary) == without_seconds(measured.summary)
    for a, b in zip(plain.history, measured.history, strict=True):
        assert {k: v for k, v in b.items() if not k.endswith("_before_last")} == a
        assert set(b) - set(a) == {"val_acc_before_last", "val_loss_before_last"}


def test_metrics_before_the_last_step_are_the_weights_before_it(tiny, tmp_path):
    """Epoch 1 has 10 steps: a checkpoint after its 9th holds the weights the 10th step starts from."""
    cfg = small(eval_before_last_step=True)
    res = fit(cfg, tiny)
    path, stop = tmp_path / "c.pt", StopRequest()
    with pytest.raises(Interrupted):
        fit(cfg, tiny, on_batch=stopping_after(stop, 9), checkpoint=path, stop=stop)
    model = fit(small(epochs=1), tiny).model
    model.load_state_dict(ckpt.load(path)["model"])
    loss, acc = evaluate(model, tiny.val_x, tiny.val_y)
    assert (res.history[0]["val_loss_before_last"], res.history[0]["val_acc_before_last"]) == (loss, acc)
    assert res.history[0]["val_acc_before_last"] != res.history[0]["val_acc"] or \
        res.history[0]["val_loss_before_last"] != res.history[0]["val_loss"]  # fmt: skip


# --- the test set is read only by a run's final evaluation ------------------------------------

SIZE_QUERIES = {"__len__", "__get__", "size", "dim"}  # the test set's size, not its images


class Watched(torch.Tensor):
    """A tensor that records each operation on it with the optimizer steps taken so far
    (``Watched.log``, ``Watched.steps``); what it returns are plain tensors."""

    log: list = []
    steps: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        Watched.log.append((name, len(Watched.steps), args[0] is Watched.watched_x))
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


def watched(data):
    """``data`` with its test images and labels recording their reads."""
    Watched.log, Watched.steps = [], []
    test_x, test_y = data.test_x.as_subclass(Watched), data.test_y.as_subclass(Watched)
    Watched.watched_x = test_x
    return dataclasses.replace(data, test_x=test_x, test_y=test_y)


def reads() -> list[tuple[int, bool]]:
    """(steps taken, images or labels) of each read of the test set's contents."""
    return [(steps, is_x) for name, steps, is_x in Watched.log if name not in SIZE_QUERIES]


@pytest.mark.parametrize("select", ["last", "best_val"])
def test_the_test_set_is_read_once_after_the_last_step(select, tiny):
    data = watched(tiny)
    cfg = small(select=select, eval_batch_size=64, **TIED)  # 200 test images: 4 batches a pass
    res = fit(cfg, data, on_batch=Watched.steps.append)
    total = len(Watched.steps)
    assert total == 8 * 10
    assert reads() and all(steps == total for steps, _ in reads())  # nothing before the last step
    assert sorted(reads()) == [(total, False)] * 4 + [(total, True)] * 4  # one evaluation pass
    assert res.summary["test_acc"] == fit(cfg, tiny).summary["test_acc"]


@pytest.mark.parametrize("before", [False, True])
def test_under_d2l_the_test_set_is_the_validation_set_each_epoch(before, tiny):
    data = watched(tiny)
    cfg = small(split="d2l", eval_batch_size=64, eval_before_last_step=before, eval_every=2, epochs=5)
    fit(cfg, data, on_batch=Watched.steps.append)
    per_epoch = math.ceil(600 / 50)
    evaluated = [2 * per_epoch, 4 * per_epoch, 5 * per_epoch]
    expected = {s: 8 for s in evaluated}  # a pass each evaluated epoch: 4 batches of images, 4 of labels
    expected[5 * per_epoch] += 8  # and the final test evaluation
    if before:
        expected.update({s - 1: 8 for s in evaluated})  # just before each evaluated epoch's last step
    seen = {}
    for steps, _ in reads():
        seen[steps] = seen.get(steps, 0) + 1
    assert seen == expected


# --- per-image results in a study's record ----------------------------------------------------


def test_pack_and_unpack_per_image_results():
    from droplab.studies.records import pack_correct, unpack_correct

    rng = np.random.default_rng(0)
    for n in (1, 7, 8, 9, 200, 10_000):
        correct = rng.random(n) < 0.8
        assert np.array_equal(unpack_correct(pack_correct(correct), n), correct)
    with pytest.raises(ValueError, match="hold 16 bits: expected 7 test images"):
        unpack_correct(pack_correct(np.ones(9, bool)), 7)
    with pytest.raises(ValueError, match="bits set beyond the 7 test images"):
        unpack_correct(pack_correct(np.ones(8, bool)), 7)
    with pytest.raises(ValueError, match="not valid base64"):
        unpack_correct("no base64!", 8)


def test_a_study_job_stores_its_per_image_results_and_the_store_checks_them(tiny):
    from droplab.studies import STUDIES
    from droplab.studies.jobs import canonical, job_config, run_job
    from droplab.studies.records import pack_correct, record_problem, unpack_correct

    study = STUDIES["headline"]
    job = job_config(study, study.variants(True)[0], 0, 2, True, len(tiny.train_x))
    record = run_job(job, tiny)
    correct = unpack_correct(record["per_image"]["test_correct"], len(tiny.test_y))
    assert correct.mean() == record["summary"]["test_acc"]
    assert fit(TrainConfig(**job["train"]), tiny).test_correct.tolist() == correct.tolist()
    n = len(tiny.test_y)
    assert record_problem(record, job, canonical, n_test=n) is None
    assert record_problem({k: v for k, v in record.items() if k != "per_image"}, job, canonical, n_test=n) is None
    bad = {
        "!!": "per_image.test_correct: per-image results are not valid base64 text",
        pack_correct(correct[:-8]): f"per_image.test_correct: per-image results hold {8 * (n // 8 - 1)} bits: "
                                    f"expected {n} test images",
        pack_correct(~correct): "per_image.test_correct: ",
    }  # fmt: skip
    for text, message in bad.items():
        assert record_problem({**record, "per_image": {"test_correct": text}}, job, canonical, n_test=n) \
            .startswith(message)  # fmt: skip
    assert record_problem({**record, "per_image": {"test_correct": "!!"}}, job, canonical).endswith("base64 text")
    assert record_problem({**record, "per_image": {"test_correct": pack_correct(~correct)}}, job, canonical) is None
    assert record_problem({**record, "per_image": []}, job, canonical).startswith("per_image is not")
