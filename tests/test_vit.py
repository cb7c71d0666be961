"""The small Vision Transformer: shapes, its four dropout sites, no masks saved, config, CLI, resume."""

import json
import signal
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from droplab import checkpoint as ckpt
from droplab import nn as dnn
from droplab.cli import main
from droplab.data import load_fashion_mnist
from droplab.interrupt import Interrupted, StopRequest
from droplab.memory import saved_bytes
from droplab.models import build_model
from droplab.train import ConfigError, TrainConfig, fit
from droplab.vit import ViT

SITES = ("attention_dropout", "projection_dropout", "mlp_dropout", "drop_path")
SMALL = dict(width=16, depth=2, heads=2)


def make(seed=0, **rates) -> ViT:
    torch.manual_seed(seed)
    return ViT(**SMALL, **rates)


def forward(model, x, seed):
    torch.manual_seed(seed)
    return model(x)


@pytest.mark.parametrize("shape", [(5, 784), (5, 1, 28, 28), (5, 28, 28)])
def test_any_image_layout_gives_logits(shape):
    assert make()(torch.rand(shape)).shape == (5, 10)


@pytest.mark.parametrize("patch", [1, 4, 14, 28])
def test_patches_are_the_strided_convolutions_windows(patch):
    x = torch.rand(3, 1, 28, 28)
    model = ViT(patch=patch, width=8, depth=1, heads=2)
    unfolded = F.unfold(x, patch, stride=patch).transpose(1, 2)  # (N, tokens, patch^2), row-major patches
    assert torch.equal(model.patches(x.reshape(3, -1)), unfolded)
    assert model(x).shape == (3, 10)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="patch = 5 must divide the image size 28"):
        ViT(patch=5)
    with pytest.raises(ValueError, match="width = 30 must be a multiple of heads = 4"):
        ViT(width=30)
    with pytest.raises(ValueError, match="depth = 0 must be at least 1"):
        ViT(depth=0)


def test_drop_path_rises_linearly_from_zero():
    model = ViT(depth=5, drop_path=0.2)
    assert [b.drop_path.p for b in model.blocks] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert ViT(depth=1, drop_path=0.3).blocks[0].drop_path.p == 0.3


def test_eval_is_deterministic_and_drops_nothing():
    x = torch.rand(4, 784)
    noisy, clean = make(**{s: 0.5 for s in SITES}).eval(), make().eval()
    assert torch.equal(forward(noisy, x, 1), forward(noisy, x, 2))
    assert torch.equal(forward(noisy, x, 1), clean(x))


@pytest.mark.parametrize("site", SITES)
def test_each_site_drops_in_training_only_at_its_own_rate(site):
    x = torch.rand(8, 784)
    model = make(**{site: 0.5}).train()
    reference = make().eval()(x)
    a, b = forward(model, x, 1), forward(model, x, 1)
    assert torch.equal(a, b)  # reproducible for a seed
    assert not torch.allclose(a, reference, atol=1e-4)  # the site drops
    assert not torch.allclose(a, forward(model, x, 2), atol=1e-4)  # another seed, other masks
    assert torch.allclose(forward(make(**{site: 0.0}).train(), x, 1), reference, atol=1e-6)  # rate 0: no change
    assert not torch.allclose(forward(make(**{site: 1.0}).train(), x, 1), reference, atol=1e-4)


def test_gradients_reach_every_parameter():
    model = make(**{s: 0.2 for s in SITES}).train()
    model(torch.rand(4, 784)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def _torch_copy(model: ViT, **rates) -> ViT:
    """``model`` with torch's dropout at each site (``impl="torch"``), its weights copied."""
    twin = ViT(**SMALL, **rates, impl="torch").train(model.training)
    twin.load_state_dict(model.state_dict())
    return twin


def _saved(model, x) -> list[torch.Tensor]:
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        model(x)
    return saved


def _is_mask(t: torch.Tensor, p: float) -> bool:
    return t.dtype == torch.bool or (t.is_floating_point() and t.numel() > 1
                                     and bool(torch.isin(t, torch.tensor([0.0, 1.0, 1 / (1 - p)])).all()))


def test_no_dropout_mask_is_saved_for_backward():
    """droplab's sites save no mask; torch's save one at each site, and droplab saves fewer bytes."""
    p, x = 0.25, torch.rand(32, 784)
    rates = {s: p for s in SITES if s != "drop_path"}
    model = make(**rates).train()
    activation = 32 * 16 * 16  # batch x tokens x width: the smallest activation dropped
    ours = [t for t in _saved(model, x) if t.numel() >= activation]
    assert not [t for t in ours if _is_mask(t, p)]
    theirs = _torch_copy(model, **rates)
    masks = [t for t in _saved(theirs, x) if t.numel() >= activation and _is_mask(t, p)]
    assert len(masks) == 4 * 2  # per block: attention probabilities, projection, MLP inside and output
    assert saved_bytes(model, x) < saved_bytes(theirs, x)


def test_torchs_drop_path_saves_one_draw_per_sample():
    p, x = 0.5, torch.rand(32, 784)
    theirs = _torch_copy(make(drop_path=p), drop_path=p).train()  # block 0 at rate 0, block 1 at p
    assert [t.shape for t in _saved(theirs, x) if t.shape == (32, 1, 1) and _is_mask(t, p)] == [(32, 1, 1)] * 2
    assert not [t for t in _saved(make(drop_path=p).train(), x) if t.shape == (32, 1, 1)]


def test_the_torch_impl_is_torchs_dropout_at_every_site():
    model = _torch_copy(make(), **{s: 0.1 for s in SITES})
    assert not [m for m in model.modules() if isinstance(m, (dnn.Dropout, dnn.DropPath))]
    assert all(type(b.mlp[2]) is torch.nn.Dropout and b.attn.impl == b.proj_drop.impl == b.mlp_drop.impl == "torch"
               for b in model.blocks)  # fmt: skip
    assert [b.drop_path.p for b in model.blocks] == [0.0, 0.1]


def test_the_impls_agree_exactly_in_eval():
    rates = {s: 0.3 for s in SITES}
    x = torch.rand(6, 784)
    ours = make(**rates).eval()
    assert torch.equal(_torch_copy(ours, **rates)(x), ours(x))


@pytest.mark.parametrize("site", SITES)
def test_the_impls_agree_in_distribution_in_training(site):
    """At each site alone (rate 0.5), 300 draws of the output per impl (8 images, each repeated 300
    times in one batch: every sample draws its own masks): the same mean (within 5 standard errors,
    each of the 8 x 10 logits) and about the same spread."""
    x, draws = torch.rand(8, 784, generator=torch.Generator().manual_seed(0)).repeat(300, 1), 300
    ours = make(**{site: 0.5}).train()
    theirs = _torch_copy(ours, **{site: 0.5})
    with torch.no_grad():
        a, b = forward(ours, x, 1).view(draws, 8, 10), forward(theirs, x, 2).view(draws, 8, 10)
    assert ours(x[:8]).shape == theirs(x[:8]).shape == (8, 10)
    error = ((a.var(0) + b.var(0)) / draws).sqrt()
    assert ((a.mean(0) - b.mean(0)).abs() / error).max() < 5
    assert 0.7 < (b.var(0).mean() / a.var(0).mean()).item() < 1.4
    assert b.var(0).mean() > 1e-4  # torch's copy drops too


@pytest.mark.parametrize("impl", ["jax", "Torch", ""])
def test_an_unknown_impl_is_refused_naming_it(impl):
    with pytest.raises(ValueError, match=f"ViT impl must be 'droplab' or 'torch'; got '{impl}'"):
        ViT(impl=impl)


def test_build_model_makes_the_vit_and_refuses_its_options_elsewhere():
    model = build_model("vit", (256, 256), (0.5, 0.5), vit=dict(width=32, depth=3, heads=2, mlp_dropout=0.1))
    assert isinstance(model, ViT) and len(model.blocks) == 3 and model.blocks[0].mlp_dropout == 0.1
    with pytest.raises(ValueError, match="ViT options need model 'vit', got model 'mlp'"):
        build_model("mlp", (8,), (0.5,), vit=dict(width=32))


@pytest.mark.parametrize("kw, message", [
    (dict(vit_patch=5), "vit_patch = 5 is invalid: expected a divisor of the image size 28: 1, 2, 4, 7, 14 or 28"),
    (dict(vit_width=30), "vit_width = 30 is invalid: expected a multiple of vit_heads = 4"),
    (dict(vit_depth=0), "vit_depth = 0 is invalid: expected an integer from 1 to 256"),
    (dict(vit_drop_path=1.5), "vit_drop_path = 1.5 is invalid: expected a probability in [0, 1] (0: off)"),
    (dict(vit_mlp_dropout=float("nan")), "vit_mlp_dropout = nan is invalid: expected a probability in [0, 1]"),
    (dict(hidden=(8,)), "hidden = (8,) is invalid: expected (256, 256) with model vit (it has the vit_ options)"),
    (dict(dropout=(0.1, 0.1)), "dropout = (0.1, 0.1) is invalid: expected (0.5, 0.5) with model vit"),
    (dict(dropout_impl="reference"), "dropout_impl = 'reference' is invalid: expected 'fast' with model vit"),
    (dict(norm="layer"), "model = 'vit' is invalid: expected mlp when noise or norm"),
    (dict(model="mlp", vit_depth=2), "model = 'mlp' is invalid: expected vit when vit_patch or vit_width"),
    (dict(model="scratch", vit_attention_dropout=0.1), "model = 'scratch' is invalid: expected vit when"),
])  # fmt: skip
def test_config_refuses_bad_vit_options(kw, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{"model": "vit", **kw}).validate()
    assert str(info.value).startswith(message)


def test_config_gives_the_vit_its_options():
    cfg = TrainConfig(model="vit", vit_width=32, vit_heads=8, vit_drop_path=0.1).validate()
    assert cfg.vit_options() == dict(patch=7, width=32, depth=4, heads=8, attention_dropout=0.0,
                                     projection_dropout=0.0, mlp_dropout=0.0, drop_path=0.1)  # fmt: skip


def test_cli_refuses_bad_vit_options_naming_the_option(capsys):
    for args, message in [(["--vit-patch", "5"], "--vit-patch 5: invalid"),
                          (["--vit-width", "30"], "--vit-width 30: invalid"),
                          (["--hidden", "8"], "--hidden")]:  # fmt: skip
        with pytest.raises(SystemExit) as info:
            main(["train", "--model", "vit", *args])
        assert info.value.code == 2
        assert message in capsys.readouterr().err


TINY = ["--batch-size", "50", "--val-size", "100", "--no-verify", "--threads", "1", "--vit-width", "16",
        "--vit-depth", "2", "--vit-heads", "2"]  # fmt: skip


def test_train_vit_one_epoch_from_the_command_line(tiny_dir, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "droplab", "train", "--model", "vit", "--epochs", "1", "--data-dir", str(tiny_dir),
         "--out", str(out), "--vit-attention-dropout", "0.1", "--vit-drop-path", "0.1", *TINY],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "vit: patch 7, width 16, depth 2, heads 2" in proc.stdout and "test acc" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "vit" and config["vit_attention_dropout"] == 0.1 and config["vit_width"] == 16
    assert {"metrics.csv", "summary.json", "model.pt"} <= {p.name for p in out.iterdir()}


def test_a_stopped_vit_run_resumes_bit_for_bit(tiny_dir, tmp_path):
    data = load_fashion_mnist(tiny_dir, val_size=100, verify=False)
    cfg = TrainConfig(model="vit", vit_width=16, vit_depth=2, vit_heads=2, vit_attention_dropout=0.1,
                      vit_projection_dropout=0.1, vit_mlp_dropout=0.1, vit_drop_path=0.1, optimizer="adam", lr=1e-3,
                      epochs=2, batch_size=50, threads=1, augment=1)  # fmt: skip
    whole = fit(cfg, data)
    assert isinstance(whole.model, ViT) and len(whole.model.blocks) == 2 and whole.model.blocks[1].attn.p == 0.1
    path, stop, count = tmp_path / "ckpt.pt", StopRequest(), [0]

    def on_batch(_loss):
        count[0] += 1
        if count[0] == 13:  # in the second epoch (10 steps an epoch)
            stop.signum = signal.SIGINT

    with pytest.raises(Interrupted):
        fit(cfg, data, on_batch=on_batch, checkpoint=path, stop=stop)
    resumed = fit(cfg, data, checkpoint=path, resume=ckpt.load(path))
    assert resumed.history == whole.history  # floats compared exactly
    a, b = resumed.model.state_dict(), whole.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.summary["test_acc"] == whole.summary["test_acc"]


def test_droplab_layers_only():
    """Every dropout site is droplab's own layer or function, none torch's."""
    model = make(**{s: 0.1 for s in SITES})
    assert not [m for m in model.modules() if type(m) is torch.nn.Dropout]
    assert all(isinstance(b.mlp[2], dnn.Dropout) and isinstance(b.drop_path, dnn.DropPath) for b in model.blocks)
