"""``droplab.swap_dropout`` on a Hugging Face model: a small BERT built from its config (nothing
downloaded), eager attention. What the swap reaches and reports, eval outputs unchanged, train
outputs reproducible for a seed, gradients equal to the reference composition with the same masks,
``reverse=True`` giving torch's layers back.

The truth of transformers' BERT (checked below, not assumed): ``BertSelfAttention`` holds an
``nn.Dropout`` it never calls; its forward reads ``self.dropout.p`` and passes it to the attention
function, which calls ``nn.functional.dropout`` on the attention probabilities. The swap replaces
that layer (harmless: same p) and names the site as not reached; the dropout on the attention
probabilities stays torch's.

The tests skip only where transformers cannot be imported (and fail instead where
``DROPLAB_REQUIRE_TRANSFORMERS`` is set, as .ci/run sets it).
"""

from __future__ import annotations

import copy

import torch
from optional import import_or_skip
from test_swap import ReferenceDropout  # x * mask / (1 - p), the mask droplab draws; p readable
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from droplab import nn as dnn
from droplab import swap_dropout

transformers = import_or_skip("transformers", "pip install 'droplab[test]'")

LAYERS = 2


def bert(attention_dropout: float = 0.1) -> nn.Module:
    config = transformers.BertConfig(
        num_hidden_layers=LAYERS, hidden_size=64, num_attention_heads=4, intermediate_size=128, vocab_size=100,
        max_position_embeddings=64, attention_probs_dropout_prob=attention_dropout, attn_implementation="eager")
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 100, (3, 16), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 12:] = 0  # one padded sequence: the attention mask is used
    return {"input_ids": ids, "attention_mask": mask}


class Bernoullis(TorchDispatchMode):
    """Counts the masks torch draws (CPU dropout: ``empty_like``, then ``bernoulli_``)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func.overloadpacket in (torch.ops.aten.bernoulli_, torch.ops.aten.native_dropout)
        return func(*args, **(kwargs or {}))


def masks_drawn_by_torch(model: nn.Module) -> int:
    with Bernoullis() as mode:
        model.train()(**batch())
    return mode.count


def test_the_report_names_the_attention_dropout_it_cannot_reach():
    assert transformers.__version__  # the version tested: constraints.txt
    model = bert()
    assert model.config._attn_implementation == "eager"
    assert masks_drawn_by_torch(model) == 1 + 3 * LAYERS + 1  # embeddings; attention, its output, FFN; classifier
    report = swap_dropout(model)
    assert len(report.replaced) == 8  # embeddings, classifier, and per layer: self.dropout, output, attention output
    assert "bert.encoder.layer.0.attention.self.dropout" in report.replaced
    names = [f"bert.encoder.layer.{i}.attention.self" for i in range(LAYERS)]
    assert [name for name, _ in report.unreachable] == names
    assert all("reads the rate of its layer 'dropout' (self.dropout.p)" in why for _, why in report.unreachable)
    kinds = {type(m) for m in model.modules() if isinstance(m, nn.Dropout)}
    assert kinds == {dnn.Dropout} and all(m.p == 0.1 for m in model.modules() if isinstance(m, nn.Dropout))
    # the truth behind the report: torch still draws the attention probabilities' masks, one per layer
    assert masks_drawn_by_torch(model) == LAYERS
    assert masks_drawn_by_torch(bert(attention_dropout=0.0)) == 1 + 2 * LAYERS + 1
    assert swap_dropout(model).replaced == []


def test_eval_outputs_are_identical_and_reverse_restores_torchs_layers():
    model, x = bert(), batch()
    before = model.eval()(**x).logits
    swap_dropout(model)
    assert torch.equal(model(**x).logits, before) and not any(m.training for m in model.modules())
    report = swap_dropout(model, reverse=True)
    assert len(report.replaced) == 8
    layers = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(layers) == 8 and all(type(m) is nn.Dropout and m.p == 0.1 for m in layers)
    assert torch.equal(model(**x).logits, before)
    assert masks_drawn_by_torch(model) == 1 + 3 * LAYERS + 1  # torch's layers draw their masks again


def test_train_outputs_are_reproducible_for_a_seed_and_differ_between_seeds():
    model, x = bert(), batch()
    swap_dropout(model)
    model.train()
    outs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        outs.append(model(**x).logits)
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_gradients_equal_the_reference_composition_with_the_same_masks():
    # the attention dropout (torch's F.dropout) stays on: both models draw from torch's generator
    # in the same order, so it draws the same masks in both
    model, x = bert(), batch()
    swap_dropout(model)
    reference = copy.deepcopy(model)
    swapped = 0
    for module in list(reference.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, dnn.Dropout):
                setattr(module, name, ReferenceDropout(child.p))
                swapped += 1
    assert swapped == 8
    labels = torch.tensor([0, 1, 1])
    outs, grads = [], []
    for m in (model.train(), reference.train()):
        torch.manual_seed(9)
        out = m(**x, labels=labels)
        out.loss.backward()
        outs.append(out.logits)
        grads.append([p.grad for p in m.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-6, atol=1e-6)
    assert all(g is not None for g in grads[0])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # and the masks matter: another seed for the reference gives other gradients
    reference.zero_grad()
    torch.manual_seed(10)
    reference(**x, labels=labels).loss.backward()
    assert not torch.allclose(next(reference.parameters()).grad, grads[0][0])
