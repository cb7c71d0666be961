"""benchmarks/swap_memory.py's accounting, on tiny models (no timing): the bytes saved for backward
that are dropout masks, by site kind, for torch's dropout and for droplab's after ``swap_dropout`` (and, on
a BERT, ``use_droplab_attention`` too)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "swap_memory.py"
spec = importlib.util.spec_from_file_location("swap_memory", SCRIPT)
bench = sys.modules.setdefault("swap_memory", importlib.util.module_from_spec(spec))  # its dataclass looks it up
spec.loader.exec_module(bench)


class Functional(nn.Module):
    """A dropout swap_dropout cannot reach: a call inside forward."""

    def forward(self, x):
        return nn.functional.dropout(x, 0.3, self.training)


def test_masks_are_counted_where_torch_saves_them_and_droplab_saves_none_at_swapped_sites():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, 16), Functional(), nn.Linear(16, 4))
    x = torch.randn(32, 8)
    models, report = bench.sides(model.train())
    assert report.replaced == ["1"] and report.unreachable[0][0] == "3"
    saved = {name: bench.saved_in_forward(m, lambda m: m(x).sum()) for name, m in models.items()}
    mask = 32 * 16 * 4  # one float32 mask of the 32 x 16 activations
    inside = "inside Functional.forward (swap cannot reach)"
    assert saved["torch"].masks == {bench.REACHED: mask, inside: mask}
    assert saved["droplab"].masks == {inside: mask}  # droplab's layer saves no mask; the functional call still does
    assert saved["torch"].total - saved["droplab"].total == mask  # the rest saved alike (activations, no weights)
    assert saved["droplab"].total == 32 * 8 * 4 + 2 * 32 * 16 * 4 + mask  # the 3 linear layers' inputs, the mask
    assert all(p.grad is None for m in models.values() for p in m.parameters())  # backward ran, grads cleared


def test_a_transformer_layers_attention_masks_are_the_site_swap_cannot_reach():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, dropout=0.1, batch_first=True)
    x = torch.randn(3, 5, 8)
    models, report = bench.sides(layer.train())
    assert len(report.replaced) == 3
    saved = {name: bench.saved_in_forward(m, lambda m: m(x).sum()) for name, m in models.items()}
    attention = "inside MultiheadAttention.forward (swap cannot reach)"
    assert saved["torch"].masks == {bench.REACHED: 3 * 5 * (16 + 8 + 8) * 4, attention: 3 * 2 * 5 * 5 * 4}
    assert saved["droplab"].masks == {attention: 3 * 2 * 5 * 5 * 4}
    assert saved["droplab"].mask_bytes < saved["torch"].mask_bytes < saved["torch"].total


def test_a_layer_that_draws_its_mask_otherwise_is_counted_too():
    from droplab import nn as dnn

    torch.manual_seed(0)
    x = torch.randn(32, 8)
    for impl, masks in (("reference", {bench.REACHED: 32 * 16 * 4}), ("fast", {})):  # reference: rand, then u > p
        model = nn.Sequential(nn.Linear(8, 16), dnn.Dropout(0.5, impl=impl), nn.Linear(16, 4)).train()
        assert bench.saved_in_forward(model, lambda m: m(x).sum()).masks == masks


def test_with_droplabs_attention_too_a_bert_saves_no_mask_at_any_site():
    if os.environ.get("DROPLAB_REQUIRE_TRANSFORMERS"):  # set by .ci/run: there it is installed
        import transformers
    else:
        transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=2, intermediate_size=32,
                                     vocab_size=50, max_position_embeddings=16, attn_implementation="eager")
    torch.manual_seed(0)
    model = transformers.BertModel(config, add_pooling_layer=False).train()
    ids = torch.randint(1, 50, (3, 5))
    models, report = bench.sides(model, attention=True)
    assert list(models) == ["torch", "droplab", bench.WITH_ATTENTION]
    assert models[bench.WITH_ATTENTION].config._attn_implementation == "droplab"
    saved = {name: bench.saved_in_forward(m, lambda m: m(input_ids=ids).last_hidden_state.sum())
             for name, m in models.items()}  # fmt: skip
    attention = "inside BertSelfAttention.forward (swap cannot reach)"
    probs = 2 * 3 * 2 * 5 * 5 * 4  # per layer a float mask of (batch, heads, L, S)
    assert saved["droplab"].masks == {attention: probs}
    assert saved["torch"].masks[attention] == probs and saved["torch"].masks[bench.REACHED] > 0
    assert saved[bench.WITH_ATTENTION].masks == {}
    assert saved[bench.WITH_ATTENTION].total < saved["droplab"].total - probs  # the mask, and P and dropped P
