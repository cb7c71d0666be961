"""The general MLP's input dropout and SELU activation (TrainConfig ``input_dropout``, ``activation``):
what they compute, that their defaults build today's model, the fast paths with them, their validation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from droplab import nn as dnn
from droplab.data import load_fashion_mnist
from droplab.models import MLP, build_model
from droplab.train import ConfigError, TrainConfig, fit
from droplab.train.step import written_out


@pytest.fixture
def tiny(tiny_dir):
    return load_fashion_mnist(tiny_dir, val_size=100, verify=False)


def small(**kw) -> TrainConfig:
    return TrainConfig(**{"model": "mlp", "hidden": (32, 16), "epochs": 2, "batch_size": 50, **kw})


def _first_layer_input(model: MLP, x: torch.Tensor) -> torch.Tensor:
    """What the first linear layer receives from ``x`` in the model's mode."""
    seen = []
    first = next(m for m in model.net if isinstance(m, nn.Linear))
    handle = first.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        model(x)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_input_dropout_drops_about_p_of_the_pixels_and_scales_the_rest(p):
    torch.manual_seed(0)
    model = MLP((16,), (0.0,), input_dropout=p)
    x = torch.rand(64, 1, 28, 28) + 0.5  # no pixel is 0 before dropout
    flat = x.reshape(64, -1)
    got = _first_layer_input(model, x)
    dropped = (got == 0).sum().item()
    n = flat.numel()
    assert abs(dropped - p * n) < 5 * math.sqrt(n * p * (1 - p))  # binomial(n, p), 5 sigma
    kept = got != 0
    torch.testing.assert_close(got[kept], flat[kept] / (1 - p), rtol=1e-6, atol=0)
    assert not torch.equal(_first_layer_input(model, x) == 0, got == 0)  # each call draws a new mask
    assert torch.equal(_first_layer_input(model.eval(), x), flat)  # eval: the identity


def test_input_dropout_is_one_layer_before_the_first_linear_and_only_there():
    model = MLP((16, 8), (0.5, 0.0), input_dropout=0.2)
    kinds = [type(m) for m in model.net]
    assert kinds == [nn.Flatten, dnn.Dropout, nn.Linear, nn.ReLU, dnn.Dropout, nn.Linear, nn.ReLU, nn.Linear]
    assert model.net[1].p == 0.2 and model.net[1].impl == "fast"
    assert MLP((16,), (0.5,), input_dropout=0.2, dropout_impl="reference").net[1].impl == "reference"
    assert type(MLP((16,), (0.5,), input_dropout=0.2, noise="gaussian").net[1]) is dnn.Dropout  # plain dropout


def _todays_mlp(hidden, dropout):
    """The general MLP as built before input dropout and SELU existed, written out."""
    modules, width = [nn.Flatten()], 784
    for size, p in zip(hidden, dropout):
        modules += [nn.Linear(width, size), nn.ReLU()] + ([dnn.Dropout(p)] if p > 0 else [])
        width = size
    return nn.Sequential(*modules, nn.Linear(width, 10))


@pytest.mark.parametrize("hidden, dropout", [((64, 32), (0.5, 0.5)), ((48, 24, 12), (0.2, 0.0, 0.3))])
def test_the_defaults_build_todays_model(hidden, dropout):
    torch.manual_seed(7)
    want = _todays_mlp(hidden, dropout)
    for kwargs in ({}, {"input_dropout": 0.0, "activation": "relu"}):
        torch.manual_seed(7)
        model = build_model("mlp", hidden, dropout, **kwargs)
        assert [type(m) for m in model.net] == [type(m) for m in want]
        got_state, want_state = model.state_dict(), want.state_dict()
        assert list(got_state) == [f"net.{k}" for k in want_state]  # the same names, in the same order
        assert all(torch.equal(got_state[f"net.{k}"], v) for k, v in want_state.items())
        x = torch.randn(20, 784, generator=torch.Generator().manual_seed(1))
        torch.manual_seed(3)
        out = model(x)
        after = torch.rand(4)  # the same draws consumed
        torch.manual_seed(3)
        assert torch.equal(out, want(x)) and torch.equal(after, torch.rand(4))


def test_selu_initializes_lecun_normal():
    torch.manual_seed(0)
    model = MLP((512, 256), (0.0, 0.0), activation="selu")
    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    assert [type(m) for m in model.net if not isinstance(m, (nn.Linear, nn.Flatten))] == [nn.SELU, nn.SELU]
    for lin in linears:
        w = lin.weight.double()
        n, sigma2 = w.numel(), 1.0 / lin.in_features
        # sum(w^2) / sigma^2 ~ chi-square(n); Wilson-Hilferty: its cube root / n is normal with
        # mean 1 - 2/(9n), variance 2/(9n). 5 sigma.
        cube = ((w.square().sum() / sigma2 / n) ** (1 / 3)).item()
        assert abs(cube - (1 - 2 / (9 * n))) < 5 * math.sqrt(2 / (9 * n)), lin
        assert abs(w.mean().item()) < 5 * math.sqrt(sigma2 / n)
        assert torch.equal(lin.bias, torch.zeros_like(lin.bias))
    x = torch.randn(4000, 784, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = model.net[2](model.net[1](x))  # self-normalizing: about mean 0, variance 1
    assert abs(h.mean().item()) < 0.1 and abs(h.var().item() - 1) < 0.15


def test_the_written_out_step_and_the_fused_layers_step_aside():
    assert written_out(MLP((16, 8), (0.5, 0.5), input_dropout=0.2), "fp32") is None
    assert written_out(MLP((16, 8), (0.5, 0.5), activation="selu"), "fp32") is None
    assert written_out(MLP((16, 8), (0.5, 0.5)), "fp32") is not None  # the control
    assert MLP((16, 8), (0.5, 0.5), activation="selu").fusable_at == frozenset()
    assert MLP((16, 8), (0.5, 0.5), input_dropout=0.2).fusable_at == frozenset({2, 5})  # the hidden layers only


@pytest.mark.parametrize("extra", [{"input_dropout": 0.2}, {"activation": "selu", "noise": "alpha"},
                                   {"activation": "selu", "input_dropout": 0.1}])  # fmt: skip
def test_fast_and_stock_paths_train_the_same_numbers(tiny, monkeypatch, extra):
    from test_train import assert_fast_paths_match_the_stock_ones

    assert_fast_paths_match_the_stock_ones(small(**extra), tiny, monkeypatch)


@pytest.mark.parametrize("extra", [{"input_dropout": 0.2}, {"activation": "selu", "noise": "alpha"},
                                   {"activation": "selu", "track_activations": True}])  # fmt: skip
def test_a_short_run_with_each_setting_finishes(tiny, extra):
    res = fit(small(**extra), tiny)
    assert math.isfinite(res.summary["val_loss"]) and res.summary["val_acc"] > 0.1
    if extra.get("track_activations"):
        assert {"act_var_1", "act_var_2", "act_var_train_1", "act_var_train_2"} <= set(res.history[-1])
    assert fit(small(**extra), tiny).history == res.history  # seeded


@pytest.mark.parametrize(
    "change, message",
    [
        ({"input_dropout": 1.0}, r"input_dropout = 1.0 is invalid: expected a probability in \[0, 1\)"),
        ({"input_dropout": -0.1}, r"input_dropout = -0.1 is invalid: expected a probability in \[0, 1\)"),
        ({"input_dropout": float("nan")}, r"input_dropout = nan is invalid: expected a probability in \[0, 1\)"),
        ({"input_dropout": True}, r"input_dropout = True is invalid"),
        ({"activation": "tanh"}, "activation = 'tanh' is invalid: expected one of relu, selu"),
        ({"model": "scratch", "input_dropout": 0.2}, "model = 'scratch' is invalid: expected mlp when .*input_dropout"),
        ({"model": "concise", "activation": "selu"}, "model = 'concise' is invalid: expected mlp when .*activation"),
    ],
)
def test_bad_values_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        small(**change).validate()


def test_the_model_refuses_bad_values_too():
    with pytest.raises(ValueError, match=r"input_dropout must be in \[0, 1\)"):
        MLP((8,), (0.5,), input_dropout=1.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        MLP((8,), (0.5,), input_dropout=float("nan"))
    with pytest.raises(ValueError, match="activation must be one of relu, selu; got 'tanh'"):
        MLP((8,), (0.5,), activation="tanh")
    with pytest.raises(ValueError, match="need model 'mlp'"):
        build_model("scratch", (8, 8), (0.5, 0.5), activation="selu")


def test_new_fields_at_their_default_keep_job_keys():
    from droplab.studies.jobs import config_key
    from droplab.train import with_defaults

    job = {"train": {"epochs": 3, "hidden": [8]}, "data": "x"}
    with_fields = {**job, "train": {**job["train"], "input_dropout": 0.0, "activation": "relu"}}
    assert config_key(job) == config_key(with_fields)
    assert config_key({**job, "train": {**job["train"], "input_dropout": 0.2}}) != config_key(job)
    assert with_defaults({})["input_dropout"] == 0.0 and with_defaults({})["activation"] == "relu"
