"""``droplab.hf``: transformers' attention functions computed by droplab's scaled_dot_product_attention, on
a tiny BERT (padding in the batch) and a tiny Llama and Qwen2 (grouped-query attention, causal), all built
from their configs (nothing downloaded). Without dropout: transformers' own ``"sdpa"`` and ``"eager"``
outputs. In training: reproducible for a seed, other for another, and values and gradients equal to
transformers' eager attention with its dropout replaced by droplab's (``probs * keep_mask(seed,
probs.shape, p) / (1 - p)`` for the same seeds: the other dropouts are 0); no tensor of size L x S per head
saved for backward; switching back gives the previous implementation's outputs.

The tests skip only where transformers cannot be imported (and fail instead where
``DROPLAB_REQUIRE_TRANSFORMERS`` is set, as .ci/run sets it).
"""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from optional import import_or_skip
from torch import nn

import droplab.functional as DF
from droplab.hf import NAME, attention_forward, use_droplab_attention

transformers = import_or_skip("transformers", "pip install 'droplab[test]'")

BATCH, SEQ, HEADS = 3, 20, 4  # SEQ is not the head size (16): q, k, v are not L x S
P = 0.25
SIZES = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=HEADS, intermediate_size=128, vocab_size=100,
             max_position_embeddings=64)  # fmt: skip


def bert(impl: str = "sdpa", p: float = P) -> nn.Module:
    """A tiny BERT with attention dropout ``p`` and no other dropout."""
    config = transformers.BertConfig(**SIZES, attention_probs_dropout_prob=p, hidden_dropout_prob=0.0,
                                     attn_implementation=impl)  # fmt: skip
    torch.manual_seed(0)
    return transformers.BertModel(config, add_pooling_layer=False)


def causal_lm(kind: str = "llama", impl: str = "sdpa", p: float = P) -> nn.Module:
    """A tiny Llama or Qwen2 with grouped-query attention (2 key/value heads for 4) and attention dropout ``p``."""
    config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[kind]
    config = config_class(**SIZES, num_key_value_heads=2, attention_dropout=p)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config, attn_implementation=impl)


MODELS = {"bert": bert, "llama": lambda impl="sdpa", p=P: causal_lm("llama", impl, p),
          "qwen2": lambda impl="sdpa", p=P: causal_lm("qwen2", impl, p)}  # fmt: skip


def batch(padded: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 100, (BATCH, SEQ), generator=g)
    mask = torch.ones_like(ids)
    if padded:
        mask[0, 14:] = 0  # one padded sequence: the attention mask is used
    return {"input_ids": ids, "attention_mask": mask}


def output(model: nn.Module, padded: bool = True) -> torch.Tensor:
    out = model(**batch(padded))
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def switched(model: nn.Module) -> nn.Module:
    ours = copy.deepcopy(model)
    use_droplab_attention(ours)
    return ours


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("padded", [True, False])
def test_without_dropout_the_outputs_are_transformers_sdpa_and_eager(name, padded):
    sdpa = MODELS[name]("sdpa").eval()
    eager = MODELS[name]("eager").eval()
    ours = switched(sdpa)
    assert ours.config._attn_implementation == NAME and sdpa.config._attn_implementation == "sdpa"
    with torch.no_grad():
        got = output(ours, padded)
        assert torch.allclose(got, output(sdpa, padded), atol=1e-5, rtol=0)
        assert torch.allclose(got, output(eager, padded), atol=1e-5, rtol=0)
    train_without_dropout = switched(MODELS[name]("sdpa", p=0.0)).train()  # training, attention dropout 0
    with torch.no_grad():
        assert torch.allclose(output(train_without_dropout, padded), got, atol=1e-5, rtol=0)


def test_the_causal_flag_and_the_mask_are_passed_as_transformers_sdpa_decides():
    calls = []

    def spy(module, query, key, value, attention_mask, **kwargs):
        calls.append((attention_mask is None, kwargs.get("is_causal"), module.is_causal))
        return attention_forward(module, query, key, value, attention_mask, **kwargs)

    transformers.AttentionInterface.register("droplab-spy", spy)
    transformers.AttentionMaskInterface.register("droplab-spy", transformers.masking_utils.sdpa_mask)
    model = causal_lm(impl="droplab-spy").eval()
    with torch.no_grad():
        output(model, padded=False), output(model, padded=True)
    assert calls == [(True, None, True)] * 2 + [(False, None, True)] * 2  # no mask: causal from the module


@pytest.mark.parametrize("name", MODELS)
def test_training_is_reproducible_for_a_seed_and_differs_across_seeds(name):
    model = switched(MODELS[name]("sdpa")).train()
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        with torch.no_grad():
            runs.append(output(model))
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2], atol=1e-3)


def reference_run(model: nn.Module, monkeypatch) -> tuple[torch.Tensor, list[float]]:
    """The eager model's output with torch's dropout replaced by droplab's (the same seed sequence); the
    rates of the calls that dropped."""
    rates = []

    def dropout(x, p=0.5, training=True, inplace=False):
        rates.append(p) if training and p > 0 else None
        return DF.dropout(x, p, training, inplace)

    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.functional, "dropout", dropout)
        return output(model), rates


def loss_and_grads(out: torch.Tensor, model: nn.Module) -> dict[str, torch.Tensor]:
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    (out * weights).sum().backward()
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", MODELS)
def test_training_equals_eager_attention_with_droplabs_dropout_for_the_same_seeds(name, monkeypatch):
    eager = MODELS[name]("eager").train()
    ours = switched(eager)
    torch.manual_seed(5)
    expected, rates = reference_run(eager, monkeypatch)
    assert rates == [P] * SIZES["num_hidden_layers"]  # the attention sites, and no other dropout
    torch.manual_seed(5)
    got = output(ours)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    grads, expected_grads = loss_and_grads(got, ours), loss_and_grads(expected, eager)
    assert grads.keys() == expected_grads.keys() and len(grads) > 10
    for n, g in grads.items():  # float32 sums in another order: to 1e-5 of the gradient's scale
        scale = expected_grads[n].abs().max().clamp(min=1.0)
        assert (g - expected_grads[n]).abs().max() <= 1e-5 * scale, n
    torch.manual_seed(6)
    assert not torch.allclose(output(ours), got, atol=1e-3)  # another seed, other masks


def saved_in_forward(model: nn.Module) -> tuple[int, int]:
    """Bytes autograd saves in one training forward (each storage once), and how many saved tensors have
    the shape of the attention probabilities, (batch, heads, L, S)."""
    saved = {}

    def pack(t):
        saved.setdefault(t.untyped_storage().data_ptr(), t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = output(model.train())
    out.sum().backward()
    probs = sum(t.shape == (BATCH, HEADS, SEQ, SEQ) for t in saved.values())
    return sum(t.untyped_storage().nbytes() for t in saved.values()), probs


@pytest.mark.parametrize("name", ["bert", "llama"])
def test_no_attention_probabilities_are_saved_after_the_switch(name):
    eager, sdpa = MODELS[name]("eager"), MODELS[name]("sdpa")
    ours_bytes, ours_probs = saved_in_forward(switched(sdpa))
    for theirs in (eager, sdpa):
        their_bytes, their_probs = saved_in_forward(theirs)
        assert their_probs >= SIZES["num_hidden_layers"]  # P, its mask, dropped P: at least one per layer
        # what droplab saves less: at least one float L x S per head and layer
        assert their_bytes - ours_bytes >= SIZES["num_hidden_layers"] * BATCH * HEADS * SEQ * SEQ * 4
    assert ours_probs == 0


@pytest.mark.parametrize("name", ["bert", "llama"])
def test_switching_back_restores_the_previous_implementation_and_its_outputs(name):
    model = MODELS[name]("sdpa")
    torch.manual_seed(7)
    before = output(model.train())
    assert use_droplab_attention(model) == "sdpa"
    assert use_droplab_attention(model) == NAME  # again: no change, registered once
    assert transformers.AttentionInterface._global_mapping[NAME] is attention_forward
    model.set_attn_implementation("sdpa")
    assert model.config._attn_implementation == "sdpa"
    torch.manual_seed(7)
    assert torch.equal(output(model), before)  # torch's masks again, for the same seed


def test_the_name_works_in_from_config_once_registered():
    use_droplab_attention(bert())
    model = transformers.BertModel(transformers.BertConfig(**SIZES, attn_implementation=NAME)).eval()
    assert model.config._attn_implementation == NAME
    with torch.no_grad():
        assert output(model).isfinite().all()


def test_what_it_does_not_compute_is_refused_naming_the_option():
    model = switched(bert("sdpa")).eval()
    with pytest.raises(ValueError, match="output_attentions=True"):
        model(**batch(), output_attentions=True)
    module = model.encoder.layer[0].attention.self
    q = torch.randn(1, HEADS, 4, 16)
    for option in ("softcap", "position_bias", "s_aux", "sinks"):
        with pytest.raises(ValueError, match=f"got {option}=.*accepted: {option}=None"):
            attention_forward(module, q, q, q, None, **{option: torch.ones(())})
    assert attention_forward(module, q, q, q, None, softcap=None, output_attentions=False)[0].shape == (1, 4, HEADS, 16)


def test_use_droplab_attention_refuses_what_is_not_a_transformers_model(monkeypatch):
    with pytest.raises(TypeError, match="expects a transformers PreTrainedModel, got Linear"):
        use_droplab_attention(nn.Linear(2, 2))
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    with pytest.raises(ImportError, match="needs transformers.*got a Linear"):
        use_droplab_attention(nn.Linear(2, 2))


@pytest.mark.parametrize("name", ["bert", "llama"])
def test_gradient_checkpointing_recomputes_the_same_masks(name):
    """torch's checkpoint restores the global generator before recomputing: the same seeds, the same masks."""
    plain = switched(MODELS[name]("sdpa")).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.activation_checkpointing_enable({"use_reentrant": False})
    runs = []
    for model in (plain, checkpointed):
        torch.manual_seed(3)
        out = output(model)
        runs.append((out, loss_and_grads(out, model)))
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(g, runs[1][1][n]) for n, g in runs[0][1].items())
