"""benchmarks/transformer_memory.py's accounting on a tiny ViT (no timing): the bytes saved for
backward and the dropout masks among them, by site kind, with torch's dropout and with droplab's; the
peak RSS read in a fresh process."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # it imports swap_memory, beside it
bench = importlib.import_module("transformer_memory")

SIZE = dict(width=16, depth=3, heads=2)


def test_torch_saves_masks_at_all_four_site_kinds_and_droplab_none():
    batch, tokens, width, hidden = 8, 16, 16, 32
    models = bench.vit_pair(**SIZE)
    saved = bench.measure(models, bench.step_loss(batch))
    activation = batch * tokens * width * 4  # a float32 (N, tokens, width)
    assert saved["torch"].masks == {
        "attention": 3 * batch * 2 * tokens * tokens * 4,  # per block a float (N, heads, L, S): SDPA's math path
        "projection": 3 * activation,
        "MLP": 3 * (batch * tokens * hidden * 4 + activation),  # inside, after the GELU, and on the output
        "DropPath": 2 * 2 * batch * 4,  # blocks 1 and 2 (block 0 at rate 0): one draw per sample, each branch
    }
    assert saved["droplab"].masks == {} and saved["droplab"].mask_bytes == 0
    # the rest alike but for attention: torch's math path saves P and dropout(P) too, droplab's a log-sum-exp per row
    probs, rows = batch * 2 * tokens * tokens * 4, batch * 2 * tokens * 4
    assert saved["torch"].total - saved["droplab"].total == saved["torch"].mask_bytes + 3 * (2 * probs - rows)
    assert all(p.grad is None for m in models.values() for p in m.parameters())  # backward ran, grads cleared


def test_the_sides_have_the_same_weights_and_the_rates_of_the_issue():
    models = bench.vit_pair(**SIZE)
    a, b = models["torch"].state_dict(), models["droplab"].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(4, 784)
    assert torch.equal(models["torch"].eval()(x), models["droplab"].eval()(x))
    for block in models["torch"].blocks:
        assert block.attn.p == block.proj_drop.p == block.mlp[2].p == block.mlp_drop.p == 0.1
    assert models["torch"].blocks[-1].drop_path.p == 0.1 and bench.RATES["drop_path"] == 0.1


def test_peak_rss_is_read_in_a_fresh_process():
    out = bench.peak_rss("torch", 8, dict(width=16, depth=1), threads=1)
    assert out["method"] in ("VmHWM after a reset", "ru_maxrss")
    assert out["before"] > 10 * 2**20 and out["peak"] >= out["before"]
