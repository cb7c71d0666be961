import dataclasses
import math

import pytest
import torch

from droplab.data import load_fashion_mnist
from droplab.train import ConfigError, TrainConfig, evaluate, fit


@pytest.fixture
def tiny(tiny_dir):
    return load_fashion_mnist(tiny_dir, val_size=100, verify=False)


def small(**kw) -> TrainConfig:
    return TrainConfig(**{"hidden": (32, 16), "epochs": 2, "batch_size": 50, **kw})


def test_same_seed_same_numbers_bit_for_bit(tiny):
    a, b = fit(small(seed=3), tiny), fit(small(seed=3), tiny)
    assert a.history == b.history  # float equality, not closeness
    for (k, va), (_, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(va, vb), k
    c = fit(small(seed=4), tiny)
    assert c.history != a.history


@pytest.mark.parametrize("model", ["scratch", "concise", "plain"])
def test_learns_the_toy_task_and_reports_every_metric(tiny, model):
    res = fit(small(model=model, epochs=6, batch_size=25), tiny)
    assert [h["epoch"] for h in res.history] == list(range(1, 7))
    s = res.summary
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "seconds"):
        assert math.isfinite(s[key]), key
    assert s["val_acc"] > 0.5 and s["test_acc"] > 0.5  # chance is 0.1
    assert s["gap"] == pytest.approx(s["val_loss"] - s["train_loss_eval"])
    assert s["versions"]["torch"] == torch.__version__ and s["seed"] == 0


def test_evaluate_restores_mode_and_matches_manual(tiny):
    model = fit(small(), tiny).model
    model.train()
    loss, acc = evaluate(model, tiny.val_x, tiny.val_y, batch_size=7)
    assert model.training
    model.eval()
    with torch.no_grad():
        logits = model(tiny.val_x)
    assert acc == (logits.argmax(1) == tiny.val_y).sum().item() / len(tiny.val_y)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, tiny.val_y).item(), rel=1e-5)


def test_optimizers_run(tiny):
    for cfg in (small(optimizer="adam", lr=1e-3), small(momentum=0.9, weight_decay=1e-4)):
        assert math.isfinite(fit(cfg, tiny).summary["val_loss"])


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(model="big"), "model = 'big' is invalid: expected one of scratch, concise, plain"),
        (dict(hidden=(0, 8)), r"hidden = \(0, 8\) is invalid"),
        (dict(hidden=()), r"hidden = \(\) is invalid"),
        (dict(dropout=(1.5, 0.5)), r"dropout = \(1.5, 0.5\) is invalid: expected probabilities in \[0, 1\]"),
        (dict(dropout=(float("nan"), 0.5)), "dropout = .*nan"),
        (dict(dropout=(0.5,)), r"one probability per hidden layer \(2\)"),
        (dict(epochs=0), "epochs = 0 is invalid: expected an integer >= 1"),
        (dict(batch_size=0), "batch_size = 0 is invalid"),
        (dict(lr=0.0), "lr = 0.0 is invalid: expected a finite number > 0"),
        (dict(lr=float("nan")), "lr = nan"),
        (dict(lr=float("inf")), "lr = inf"),
        (dict(optimizer="rmsprop"), "optimizer = 'rmsprop'"),
        (dict(momentum=1.0), "momentum = 1.0"),
        (dict(weight_decay=-1.0), "weight_decay = -1.0"),
        (dict(seed=-1), "seed = -1"),
        (dict(val_size=0), "val_size = 0"),
        (dict(threads=0), "threads = 0"),
        (dict(dropout_impl="cuda"), "dropout_impl = 'cuda' is invalid: expected one of fast, reference"),
    ],
)
def test_config_validation(change, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(TrainConfig(), **change).validate()


def test_plain_still_refuses_bad_probabilities():
    with pytest.raises(ConfigError, match="dropout = "):
        TrainConfig(model="plain", dropout=(1.5, 0.5)).validate()
    assert TrainConfig(model="plain", dropout=(0.5, 0.5)).dropout == (0.0, 0.0)


def test_batch_larger_than_training_set(tiny):
    with pytest.raises(ConfigError, match="batch_size = 501 is invalid: expected at most the 500"):
        fit(small(batch_size=501), tiny)
