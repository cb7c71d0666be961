"""Dropout schedules: the factor per epoch and step, the rates in effect while a run trains, every
site of every model scaled from its configured rate, eval untouched, config and CLI, exact resume."""

import json
import signal

import pytest
import torch

from droplab import checkpoint as ckpt
from droplab.cli import main
from droplab.data import load_fashion_mnist
from droplab.interrupt import Interrupted, StopRequest
from droplab.models import build_model
from droplab.noise import AdditiveNoise
from droplab.train import ConfigError, TrainConfig, fit
from droplab.train import loop as loop_module
from droplab.train.dropout_schedule import apply_schedule, dropout_sites, parse_schedule, schedule_factor

# 500 training images in batches of 50: 10 steps an epoch
MLP = dict(model="mlp", hidden=(32, 16), dropout=(0.5, 0.25), input_dropout=0.2, batch_size=50, threads=1)
VIT = dict(model="vit", vit_width=16, vit_depth=2, vit_heads=2, vit_attention_dropout=0.1, vit_projection_dropout=0.2,
           vit_mlp_dropout=0.3, vit_drop_path=0.4, optimizer="adam", lr=1e-3, batch_size=50, threads=1)  # fmt: skip


@pytest.fixture
def tiny(tiny_dir):
    return load_fashion_mnist(tiny_dir, val_size=100, verify=False)


def rates(model) -> list[float]:
    return [float(getattr(m, name)) for m, names in dropout_sites(model) for name in names]


@pytest.mark.parametrize("schedule, factors", [
    ("constant", [1, 1, 1, 1]),
    ("early:2", [1, 1, 0, 0]),
    ("late:1", [0, 1, 1, 1]),
    ("late:3", [0, 0, 0, 1]),
])  # fmt: skip
def test_the_factor_of_each_epoch(schedule, factors):
    for epoch, factor in enumerate(factors, 1):
        steps = [schedule_factor(schedule, epoch, step, 10) for step in range(10 * (epoch - 1), 10 * epoch)]
        assert steps == [factor] * 10


def test_linear_ramps_per_step_from_zero_to_the_rate_at_the_end_of_epoch_e():
    got = [schedule_factor("linear:2", 1 + step // 10, step, 10) for step in range(40)]
    assert got == [min(1.0, k / 20) for k in range(40)] and got[0] == 0.0 and got[19] < 1.0 == got[20]
    assert parse_schedule("linear:2") == ("linear", 2) and parse_schedule("constant") == ("constant", 0)


def recording(monkeypatch) -> list:
    """Record (epoch, step, every site's rate) as each training step begins."""
    seen, step = [], loop_module.train_step

    def train_step(state, *args):
        seen.append((state.epoch, state.step, rates(state.model)))
        return step(state, *args)

    monkeypatch.setattr(loop_module, "train_step", train_step)
    return seen


# per block of the ViT: its attention's rate, its MLP's dropout layer, its DropPath, its projection's and its MLP
# output's residual dropouts
@pytest.mark.parametrize("config, base", [(MLP, [0.2, 0.5, 0.25]), (VIT, [0.1, 0.3, 0.0, 0.2, 0.3, 0.1, 0.3, 0.4,
                                                                          0.2, 0.3])])  # fmt: skip
def test_the_rates_in_effect_while_training(config, base, tiny, monkeypatch):
    seen = recording(monkeypatch)
    model = fit(TrainConfig(**config, epochs=3, dropout_schedule="early:1"), tiny).model
    assert [(e, r) for e, _, r in seen[::10]] == [(1, base), (2, [0.0] * len(base)), (3, [0.0] * len(base))]
    assert rates(model) == base  # the model returned: its configured rates back
    seen.clear()
    fit(TrainConfig(**config, epochs=2, dropout_schedule="late:1"), tiny)
    assert [r for _, _, r in seen[::10]] == [[0.0] * len(base), base]
    if config is MLP:  # the ramp, per step: rate k / 20 of the configured one on the step after k steps
        seen.clear()
        fit(TrainConfig(**config, epochs=3, dropout_schedule="linear:2"), tiny)
        assert [r for _, _, r in seen] == [[p * min(1.0, k / 20) for p in base] for k in range(30)]


@pytest.mark.parametrize("model", ["scratch", "concise"])
def test_rate_zero_is_in_effect_in_the_step_itself(model, tiny):
    """late:1's first epoch trains as the model configured without dropout: the written-out step and
    the fused layers read the rate each step; then dropout is on."""
    cfg = dict(model=model, hidden=(32, 16), batch_size=50, threads=1, epochs=2)
    off = fit(TrainConfig(**cfg, dropout=(0.0, 0.0)), tiny).history
    late = fit(TrainConfig(**cfg, dropout=(0.5, 0.5), dropout_schedule="late:1"), tiny).history
    assert late[0] == off[0] and late[1] != off[1]
    early = fit(TrainConfig(**cfg, dropout=(0.5, 0.5), dropout_schedule="early:1"), tiny).history
    constant = fit(TrainConfig(**cfg, dropout=(0.5, 0.5)), tiny).history
    assert early[0] == constant[0] and early[1] != constant[1]


MODELS = {
    "scratch": dict(),
    "scratch-reference": dict(dropout_impl="reference"),
    "concise": dict(name="concise"),
    "mlp-input": dict(name="mlp", input_dropout=0.2),
    **{f"mlp-{noise}": dict(name="mlp", noise=noise) for noise in ("gaussian", "additive", "alpha", "stratified",
                                                                    "no-rescale", "dropconnect")},  # fmt: skip
    "vit": dict(name="vit", vit=dict(width=16, depth=2, heads=2, attention_dropout=0.1, projection_dropout=0.1,
                                     mlp_dropout=0.1, drop_path=0.1)),  # fmt: skip
}


def forward(model, x, train: bool, seed: int = 0):
    torch.manual_seed(seed)
    return model.train(train)(x)


@pytest.mark.parametrize("kind", MODELS)
def test_every_site_of_every_model_is_scaled_from_its_configured_rate(kind):
    options = {"name": "scratch", "hidden": (16, 16), "dropout": (0.5, 0.3), **MODELS[kind]}
    torch.manual_seed(0)
    model, x = build_model(**options), torch.rand(4, 784)
    configured, evaluated, noisy = rates(model), forward(model, x, False), forward(model, x, True)
    assert configured and any(configured) and not torch.equal(noisy, evaluated)
    apply_schedule(model, 0.0)  # every site off: training mode computes what eval mode does
    assert torch.equal(forward(model, x, True), evaluated) and not any(rates(model))
    apply_schedule(model, 0.5)
    apply_schedule(model, 0.5)  # from the configured rates, never compounded
    halved = rates(model)
    if kind != "mlp-additive":
        assert halved == [0.5 * p for p in configured]
    assert torch.equal(forward(model, x, False), evaluated)  # eval mode: untouched by any factor
    apply_schedule(model, 1.0)  # the configured rates back, exactly: the same masks, the same numbers
    assert rates(model) == configured and torch.equal(forward(model, x, True), noisy)


def test_additive_noise_follows_the_rate_its_sigma_stands_for():
    noise = AdditiveNoise(sigma=(0.5 / 0.5) ** 0.5)  # the sigma of rate 0.5
    apply_schedule(noise, 0.4)
    assert noise.sigma == pytest.approx((0.2 / 0.8) ** 0.5)
    with pytest.raises(ValueError, match=r"factor must lie in \[0, 1\], got 1.5"):
        apply_schedule(noise, 1.5)


@pytest.mark.parametrize("changes, message", [
    (dict(dropout_schedule="early"), "dropout_schedule = 'early' is invalid: expected constant, or early:E, late:E or "
                                     "linear:E with E a whole number of epochs"),
    (dict(dropout_schedule="early:0"), "dropout_schedule = 'early:0' is invalid"),
    (dict(dropout_schedule="Linear:2"), "dropout_schedule = 'Linear:2' is invalid"),
    (dict(dropout_schedule=" late:1"), "dropout_schedule = ' late:1' is invalid"),
    (dict(dropout_schedule="early:3"), "dropout_schedule = 'early:3' is invalid: expected early:E with E from 1 to 2 "
                                       "for epochs = 3 (early or late at E >= epochs: dropout on, or off, all along)"),
    (dict(dropout_schedule="late:5"), "expected late:E with E from 1 to 2 for epochs = 3"),
    (dict(dropout_schedule="linear:4"), "expected linear:E with E from 1 to 3 for epochs = 3"),
    (dict(dropout_schedule="late:1", epochs=1), "expected constant or linear:1 for epochs = 1 (early and late need"),
    (dict(dropout_schedule="early:1", model="mlp", noise="no-rescale-test-scaled"),
     "expected constant with noise no-rescale-test-scaled (its output in eval mode, (1 - p) h, would follow"),
])  # fmt: skip
def test_bad_schedules_are_refused_naming_what_is_accepted(changes, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{"epochs": 3, **changes}).validate()
    assert message in str(info.value)
    assert TrainConfig(epochs=3, dropout_schedule="linear:3").validate()  # linear may end with the run


def test_the_command_line_records_the_schedule_and_refuses_a_bad_one(tiny_dir, tmp_path, capsys):
    common = ["train", "--data-dir", str(tiny_dir), "--hidden", "32", "16", "--batch-size", "50", "--val-size", "100",
              "--no-verify", "--threads", "1", "--epochs", "2"]  # fmt: skip
    assert main([*common, "--dropout-schedule", "early:1", "--out", str(tmp_path / "run")]) == 0
    assert "dropout schedule early:1" in " ".join(capsys.readouterr().out.split())  # the table's title, wrapped
    assert json.loads((tmp_path / "run" / "config.json").read_text())["dropout_schedule"] == "early:1"
    with pytest.raises(SystemExit) as info:
        main([*common, "--dropout-schedule", "early:2", "--out", str(tmp_path / "bad")])
    assert info.value.code == 2 and "--dropout-schedule early:2: invalid, expected early:E with E from 1 to 1 for " \
        "epochs = 2" in capsys.readouterr().err and not (tmp_path / "bad").exists()  # fmt: skip
    with pytest.raises(SystemExit):  # part of what the run computes: not to be changed on resume
        main(["train", "--resume", str(tmp_path / "run"), "--dropout-schedule", "late:1"])
    assert "--dropout-schedule cannot be combined with it" in capsys.readouterr().err


def stopped_and_resumed(cfg: TrainConfig, data, path, steps: int):
    stop, count = StopRequest(), [0]

    def on_batch(_loss):
        count[0] += 1
        if count[0] == steps:
            stop.signum = signal.SIGINT

    with pytest.raises(Interrupted):
        fit(cfg, data, on_batch=on_batch, checkpoint=path, stop=stop)
    return fit(cfg, data, checkpoint=path, resume=ckpt.load(path))


@pytest.mark.parametrize("config, schedule", [(dict(hidden=(32, 16), batch_size=50, threads=1), "early:1"),
                                              (MLP, "linear:2"), (VIT, "early:1")])  # fmt: skip
def test_a_stopped_run_resumes_bit_for_bit_under_a_schedule(config, schedule, tiny, tmp_path):
    cfg = TrainConfig(**config, epochs=3, dropout_schedule=schedule)
    whole = fit(cfg, tiny)
    resumed = stopped_and_resumed(cfg, tiny, tmp_path / "ckpt.pt", steps=13)  # mid-epoch 2 (10 steps an epoch)
    assert resumed.history == whole.history  # floats compared exactly
    a, b = resumed.model.state_dict(), whole.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.summary["test_acc"] == whole.summary["test_acc"] and rates(resumed.model) == rates(whole.model)
    other = TrainConfig(**config, epochs=3, dropout_schedule="late:1")
    with pytest.raises(ckpt.CheckpointError, match="another configuration"):
        fit(other, tiny, resume=ckpt.load(tmp_path / "ckpt.pt"))
