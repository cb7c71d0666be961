import dataclasses
import math

import pytest
import torch

from droplab.data import load_fashion_mnist
from droplab.train import ConfigError, TrainConfig, activation_variances, evaluate, fit
from droplab.vit import ViT


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
        (dict(epochs=0), "epochs = 0 is invalid: expected an integer from 1 to 100,000"),
        (dict(batch_size=0), "batch_size = 0 is invalid"),
        (dict(lr=0.0), "lr = 0.0 is invalid: expected a number > 0 and at most 3.403e\\+38"),
        (dict(lr=1e39), "lr = 1e\\+39 is invalid: expected a number > 0"),
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


def test_max_norm_holds_after_training(tiny):
    res = fit(small(model="mlp", max_norm=0.5, lr=0.5), tiny)
    for m in res.model.modules():
        if isinstance(m, torch.nn.Linear):
            assert m.weight.norm(dim=1).max().item() <= 0.5 * (1 + 1e-6)


def test_training_subset_is_seeded_and_used(tiny):
    a = fit(small(train_size=60, batch_size=20, epochs=1), tiny)
    b = fit(small(train_size=60, batch_size=20, epochs=1), tiny)
    full = fit(small(batch_size=20, epochs=1), tiny)
    assert a.history == b.history and a.history != full.history
    with pytest.raises(ConfigError, match="train_size = 100000 is invalid: expected at most the"):
        fit(small(train_size=100_000), tiny)
    with pytest.raises(ConfigError, match="batch_size = 50 is invalid: expected at most the 40 training images"):
        fit(small(train_size=40), tiny)


VIT_SMALL = dict(model="vit", hidden=(256, 256), vit_width=8, vit_depth=2, vit_heads=2, vit_mlp_dropout=0.5)


@pytest.mark.parametrize("model", [dict(model="mlp"), dict(model="scratch"), VIT_SMALL], ids=["mlp", "scratch", "vit"])
def test_activation_tracking_measures_without_changing_the_run(tiny, model):
    plain = fit(small(**model), tiny)
    tracked = fit(small(**model, track_activations=True), tiny)
    keys = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "train_loss_eval")
    assert [{k: h[k] for k in keys} for h in plain.history] == [{k: h[k] for k in keys} for h in tracked.history]
    for row in tracked.history:  # two hidden layers: the MLPs' two, the ViT's two blocks' MLP hidden layers
        assert {k for k in row if k.startswith("act_var")} == {"act_var_1", "act_var_2", "act_var_train_1",
                                                               "act_var_train_2"}  # fmt: skip
        for i in (1, 2):
            assert row[f"act_var_{i}"] > 0 and row[f"act_var_train_{i}"] > 0
    # dropout adds variance: what the next layer sees in training varies more than in eval
    last = tracked.history[-1]
    assert last["act_var_train_1"] > last["act_var_1"] and last["act_var_train_2"] > last["act_var_2"]


def test_the_vit_tracks_each_blocks_mlp_hidden_layer():
    model = ViT(width=8, depth=3, heads=2, mlp_dropout=0.5)
    x = torch.rand(16, 784, generator=torch.Generator().manual_seed(0))
    gelu, dropped = [], []
    hooks = [b.mlp[1].register_forward_hook(lambda m, i, o: gelu.append(o)) for b in model.blocks]
    hooks += [b.mlp[2].register_forward_hook(lambda m, i, o: dropped.append(o)) for b in model.blocks]
    torch.manual_seed(1)
    values = activation_variances(model, x)
    torch.manual_seed(1)  # the training pass again, on the same masks: what the MLP's dropout put out
    model(x)
    for h in hooks:
        h.remove()

    def variance(o):  # per unit over the 16 images and 16 tokens
        return o.flatten(0, 1).var(dim=0).mean().item()

    assert [values[f"act_var_{k}"] for k in (1, 2, 3)] == [variance(o) for o in gelu[:3]]  # the eval pass
    assert not any(o.requires_grad for o in gelu[:6])  # measured without building a graph
    assert [values[f"act_var_train_{k}"] for k in (1, 2, 3)] == [variance(o) for o in dropped[-3:]]
    assert model.training  # its mode restored
    with pytest.raises(ValueError, match="Linear has no hidden layer whose activations could be tracked"):
        activation_variances(torch.nn.Linear(784, 10), torch.rand(2, 784))


def test_evaluating_every_k_epochs_changes_only_which_rows_are_kept(tiny):
    every = fit(small(epochs=5), tiny)
    sparse = fit(small(epochs=5, eval_every=2), tiny)
    assert [h["epoch"] for h in sparse.history] == [2, 4, 5]  # and always after the last epoch
    assert sparse.history == [h for h in every.history if h["epoch"] in (2, 4, 5)]
    assert sparse.summary["test_acc"] == every.summary["test_acc"]


@pytest.mark.parametrize(
    "extra",
    [
        {"schedule": "onecycle"},
        {"schedule": "cosine"},
        {"noise": "dropconnect"},
        {"noise": "gaussian"},
        {"noise": "stratified"},
        {"noise": "no-rescale"},
        {"norm": "batch"},
        {"norm": "layer", "noise": "alpha"},
        {"eval_train_size": 30},
    ],
)
def test_variants_train(tiny, extra):
    res = fit(small(model="mlp", **extra), tiny)
    assert math.isfinite(res.summary["val_loss"])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"noise": "salt"}, "noise = 'salt' is invalid: expected one of dropout, gaussian"),
        ({"norm": "group"}, "norm = 'group' is invalid: expected one of none, batch, layer"),
        ({"noise": "gaussian"}, "model = 'scratch' is invalid: expected mlp when noise or norm or input_dropout or "
                                "activation is set"),
        ({"model": "mlp", "noise": "gaussian", "dropout": (1.0, 0.5)}, "infinite variance"),
        ({"max_norm": -1.0}, "max_norm = -1.0 is invalid: expected a number >= 0"),
        ({"max_norm": float("inf")}, "max_norm = inf is invalid"),
        ({"train_size": -5}, "train_size = -5 is invalid"),
        ({"eval_train_size": 1.5}, "eval_train_size = 1.5 is invalid"),
        ({"schedule": "step"}, "schedule = 'step' is invalid: expected one of constant, onecycle, cosine"),
        ({"track_activations": "yes"}, "track_activations = 'yes' is invalid"),
        ({"eval_every": 0}, "eval_every = 0 is invalid: expected an integer >= 1"),
    ],
)
def test_new_fields_are_validated(change, message):
    with pytest.raises(ConfigError, match=message):
        small(**change).validate()


def test_shift_augmentation_moves_pixels_within_k_and_is_seeded():
    from droplab.train import shift_images

    x = torch.zeros(500, 784)
    x[:, 14 * 28 + 14] = 1.0  # one lit pixel in the middle
    y = shift_images(x, 2, torch.Generator().manual_seed(0))
    where = y.nonzero()[:, 1]
    assert len(where) == 500  # every image keeps its pixel (no wrap-around, nothing lost)
    dy, dx = where // 28 - 14, where % 28 - 14
    assert dy.abs().max() <= 2 and dx.abs().max() <= 2
    assert len({(int(a), int(b)) for a, b in zip(dy, dx)}) == 25  # all 5x5 shifts occur
    assert torch.equal(y, shift_images(x, 2, torch.Generator().manual_seed(0)))
    assert torch.equal(shift_images(x, 0, torch.Generator()), x)


def test_augmented_training_is_reproducible(tiny):
    a, b = fit(small(augment=2), tiny), fit(small(augment=2), tiny)
    assert a.history == b.history and a.history != fit(small(), tiny).history


def test_recipes_are_valid_and_documented():
    from droplab import recipes

    best = recipes.recipe("best", seed=3)
    assert best.seed == 3 and best.hidden == (1024, 1024) and best.augment == 1 and best.max_norm == 3.0
    assert recipes.RECIPES["best"].seed == 0  # the stored recipe is not changed
    assert recipes.recipe("lecture") == TrainConfig()
    with pytest.raises(ValueError, match="recipe must be one of lecture, best, vit; got 'fast'"):
        recipes.recipe("fast")
    assert "chosen on the validation split only" in " ".join(recipes.__doc__.split())


def test_evaluated_epochs_are_the_history_rows():
    from droplab.train import evaluated_epochs

    assert evaluated_epochs(5, 2) == [2, 4, 5] and evaluated_epochs(4, 2) == [2, 4] and evaluated_epochs(1, 3) == [1]


def _errors():
    from pathlib import Path

    from droplab.data import DataNotFound, SplitError
    from droplab.interrupt import Interrupted
    from droplab.train import CheckpointWriteError, DataMismatch, Diverged
    from droplab.train.checks import CheckpointFieldError

    return [
        ConfigError("lr", 0.0, "a number > 0"),
        SplitError("val_size", 0, "an integer from 1 to 599"),
        Diverged(2, 14, "loss = nan", 0.1, Path("runs/r")),
        Interrupted(2, "after epoch 1", Path("runs/r")),
        DataMismatch(Path("runs/r"), "ab" * 32, "/data", "cd" * 32, "/other"),
        DataNotFound([Path("/nowhere")], "In /nowhere: nothing."),
        CheckpointWriteError(Path("runs/r/checkpoint.pt"), 28, "No space left on device", True),
        CheckpointFieldError("epoch", "is 99: expected an integer from 1 to 4"),
    ]


@pytest.mark.parametrize("err", _errors(), ids=lambda e: type(e).__name__)
def test_library_errors_carry_their_data_and_cross_processes(err):
    """Each error is made from its data (a study's worker sends its errors to the parent pickled),
    and names no command-line option: the command line says those (droplab.cli.errors)."""
    import pickle

    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err) and str(copy) == str(err)
    assert {k: v for k, v in vars(copy).items()} == {k: v for k, v in vars(err).items()}
    assert "--" not in str(err) and "droplab train" not in str(err)


def test_no_library_message_names_an_option():
    """No string in the library modules of training (docstrings aside) names a command-line option."""
    import ast
    import re
    from pathlib import Path

    import droplab

    root = Path(droplab.__file__).parent
    owned = ("checkpoint", "data", "memory", "threads", "models", "ensemble", "recipes", "interrupt", "progress")
    modules = [*sorted((root / "train").glob("*.py"))] + [root / f"{m}.py" for m in owned]
    found = []
    for path in modules:
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree) if isinstance(
            node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if re.search(r"(^|\s)--[a-z]|droplab (train|study|compare)", node.value):
                    found.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert not found, found


def test_every_field_is_checked_on_its_own_before_how_fields_relate():
    """A relation between fields reads only values found good on their own: a bad value is named
    as itself, wherever its field is declared, before any relation runs."""
    from dataclasses import dataclass

    from droplab.train import config as c

    with pytest.raises(ConfigError, match="epochs = 0 is invalid"):  # not "one probability per hidden layer"
        TrainConfig(dropout=(0.5,), epochs=0).validate()

    @dataclass
    class Scratch(TrainConfig):  # an mlp-only field declared after those the relations are written beside
        width_scale: float = c._option(1.0, lambda v: c._is_real(v) and v > 0, "a number > 0", mlp=True)

    with pytest.raises(ConfigError, match="width_scale = 'wide' is invalid: expected a number > 0"):
        Scratch(width_scale="wide").validate()
    mlp_only = "noise or norm or input_dropout or activation or width"
    with pytest.raises(ConfigError, match=f"model = 'scratch' is invalid: expected mlp when {mlp_only}"):
        Scratch(width_scale=2.0).validate()
    assert Scratch(model="mlp", width_scale=2.0).validate().width_scale == 2.0


@pytest.mark.parametrize("extra", [{}, {"model": "mlp", "hidden": (32, 16, 8), "dropout": (0.5, 0.0, 0.2)},
                                   {"dropout": (1.0, 0.5)}, {"model": "mlp", "dropout": (0.5, 1.0)}])  # fmt: skip
def test_fast_paths_train_bit_for_bit_as_the_stock_ones(tiny, monkeypatch, extra):
    """The step written out (droplab.train.step), the fused hidden layers (droplab.fused) and the
    plain SGD update in one call give the numbers of autograd, of the composed layers and of
    ``torch.optim.SGD.step``."""
    assert_fast_paths_match_the_stock_ones(small(**extra), tiny, monkeypatch)


def assert_fast_paths_match_the_stock_ones(cfg, data, monkeypatch) -> None:
    """``cfg`` trained on ``data`` with droplab's fast paths and with all of them off: the same
    history and the same weights, bit for bit."""
    from droplab import fused
    from droplab.train import loop

    fast = fit(cfg, data)
    with monkeypatch.context() as m:
        m.setattr(loop, "written_out", lambda *args: None)
        m.setattr(fused, "fusable", lambda *args: False)
        m.setattr(loop, "_plain_sgd", lambda group: False)
        stock = fit(cfg, data)
    assert fast.history == stock.history
    for (k, va), (_, vb) in zip(fast.model.state_dict().items(), stock.model.state_dict().items()):
        assert torch.equal(va, vb), k


def test_sgd_with_momentum_or_a_schedule_steps_through_the_optimizer(tiny, monkeypatch):
    from droplab.train import loop

    steps = []
    real = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **k: (steps.append(1), real(self, *a, **k))[1])
    fit(small(epochs=1), tiny)
    assert steps == []  # plain SGD: the one-call update
    for cfg in (small(epochs=1, momentum=0.9), small(epochs=1, weight_decay=1e-3), small(epochs=1, schedule="cosine")):
        steps.clear()
        fit(cfg, tiny)
        assert len(steps) == math.ceil(len(tiny.train_x) / cfg.batch_size), cfg
    assert not loop._plain_sgd({"momentum": 0.0, "weight_decay": 0.0, "nesterov": False, "maximize": True})
