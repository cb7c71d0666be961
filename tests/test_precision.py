"""``precision``: bf16 forward passes where the CPU computes bf16 natively, fp32 with a note elsewhere."""

import json

import pytest
import torch

import droplab.train.precision as precision
from droplab.cli import main
from droplab.data import load_fashion_mnist
from droplab.train import ConfigError, TrainConfig, fit

NATIVE = precision.bf16_native() is not None


@pytest.fixture
def tiny(tiny_dir):
    return load_fashion_mnist(tiny_dir, val_size=100, verify=False)


def small(**kw) -> TrainConfig:
    return TrainConfig(**{"hidden": (32, 16), "epochs": 2, "batch_size": 50, "threads": 1, **kw})


def test_precision_is_checked_and_named():
    with pytest.raises(ConfigError, match=r"precision = 'fp16' is invalid: expected one of fp32, bf16"):
        small(precision="fp16").validate()


def test_fp32_runs_record_no_precision(tiny):
    """The default changes nothing a run wrote before (the golden digests hold fp32 runs)."""
    assert "precision" not in fit(small(), tiny).summary


@pytest.mark.skipif(not NATIVE, reason="needs a CPU with AMX or AVX512-BF16 (the fallback is tested below)")
def test_bf16_trains_reproducibly_and_differs_from_fp32(tiny):
    a, b = fit(small(precision="bf16"), tiny), fit(small(precision="bf16"), tiny)
    assert a.history == b.history and a.summary["test_loss"] == b.summary["test_loss"]  # bit for bit
    assert a.summary["precision"] == "bf16" and a.summary["precision_note"] is None
    fp32 = fit(small(), tiny)
    assert a.history != fp32.history  # the products really ran in bf16
    assert all(p.dtype == torch.float32 for p in a.model.parameters())  # weights stay fp32
    assert abs(a.summary["val_acc"] - fp32.summary["val_acc"]) < 0.25  # still learns (100 images)


def test_without_native_bf16_a_run_falls_back_to_fp32_and_says_so(tiny, monkeypatch, capsys, tiny_dir, tmp_path):
    monkeypatch.setattr(precision, "bf16_native", lambda: None)
    fell_back, fp32 = fit(small(precision="bf16"), tiny), fit(small(), tiny)
    assert fell_back.history == fp32.history  # fp32, bit for bit
    assert fell_back.summary["precision"] == "fp32"
    assert "neither AMX nor AVX512-BF16" in fell_back.summary["precision_note"]
    code = main(["train", "--precision", "bf16", "--hidden", "32", "16", "--epochs", "1", "--batch-size", "50",
                 "--val-size", "100", "--no-verify", "--data-dir", str(tiny_dir), "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 0 and "note: bf16 asked for, but this CPU has neither AMX nor AVX512-BF16" in out
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["precision"] == "fp32"
