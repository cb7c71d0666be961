"""``droplab.swap_dropout`` on a real model, ``torch.nn.TransformerEncoder``: what it replaces and
reports, eval outputs unchanged, train outputs reproducible for a seed, and gradients equal to the
reference composition ``x * mask / (1 - p)`` with the same masks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from droplab import SwapReport, swap_dropout
from droplab import nn as dnn
from droplab.functional import draw_seed, keep_mask


def encoder(attention_dropout: bool = True) -> nn.TransformerEncoder:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.1, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    if not attention_dropout:
        for m in model.modules():
            if isinstance(m, nn.MultiheadAttention):
                m.dropout = 0.0
    return model


def test_it_replaces_every_dropout_layer_and_names_what_it_cannot_reach():
    model = encoder()
    report = swap_dropout(model)
    assert isinstance(report, SwapReport) and len(report.replaced) == 6  # dropout, dropout1, dropout2 per layer
    assert sorted(report.replaced)[:3] == ["layers.0.dropout", "layers.0.dropout1", "layers.0.dropout2"]
    assert [name for name, _ in report.unreachable] == ["layers.0.self_attn", "layers.1.self_attn"]
    assert all("inside its forward" in why for _, why in report.unreachable)
    kinds = {type(m) for m in model.modules() if isinstance(m, nn.Dropout)}
    assert kinds == {dnn.Dropout} and all(m.p == 0.1 for m in model.modules() if isinstance(m, nn.Dropout))
    assert swap_dropout(model).replaced == []  # nothing left to replace


def test_eval_outputs_are_identical_and_reverse_restores_torchs_layers():
    model, x = encoder(), torch.randn(3, 7, 32)
    before = model.eval()(x)
    original = repr(model)
    swap_dropout(model)
    assert torch.equal(model(x), before) and not model.training
    assert all(not m.training for m in model.modules())  # the mode kept
    report = swap_dropout(model, reverse=True)
    assert len(report.replaced) == 6 and repr(model) == original and torch.equal(model(x), before)


def test_train_outputs_are_reproducible_for_a_seed():
    model, x = encoder(attention_dropout=False), torch.randn(3, 7, 32)
    swap_dropout(model)
    model.train()
    torch.manual_seed(5)
    a = model(x)
    torch.manual_seed(5)
    b = model(x)
    torch.manual_seed(6)
    c = model(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


class ReferenceDropout(nn.Module):
    """The lecture's composition, ``x * mask / (1 - p)``, with the mask droplab's layer would draw
    (the same seed from the same generator): autograd differentiates it, no kernel involved."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        return x * keep_mask(draw_seed(), x.shape, self.p).to(x.dtype) / (1 - self.p)


def test_gradients_equal_the_reference_composition_with_the_same_masks():
    model, x = encoder(attention_dropout=False), torch.randn(3, 7, 32)
    swap_dropout(model)
    reference = copy.deepcopy(model)
    for module in list(reference.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, dnn.Dropout):
                setattr(module, name, ReferenceDropout(child.p))
    outs, grads = [], []
    for m in (model.train(), reference.train()):
        torch.manual_seed(9)
        out = m(x)
        out.square().mean().backward()
        outs.append(out)
        grads.append([p.grad for p in m.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-6, atol=1e-6)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_report_names_functional_dropout_and_layers_without_a_droplab_version():
    class Functional(nn.Module):
        def forward(self, x):
            return torch.nn.functional.dropout(x, 0.2, self.training)

    class Mine(nn.Dropout):
        def forward(self, x):
            return x

    model = nn.Sequential(Functional(), nn.FeatureAlphaDropout(0.1), Mine(0.3), nn.Dropout2d(0.2))
    report = swap_dropout(model)
    assert report.replaced == ["3"] and type(model[3]) is dnn.Dropout2d
    reasons = dict(report.unreachable)
    assert "calls dropout as a function" in reasons["0"]
    assert "no counter-based version" in reasons["1"] and "a subclass of torch's Dropout" in reasons["2"]
    assert str(report).startswith("1 dropout layer(s) replaced\nnot reached: 0: Functional.forward")


@pytest.mark.parametrize("kwargs", [{"broadcast_dims": (1,)}, {"impl": "reference"}])
def test_reverse_leaves_layers_torch_has_no_equivalent_of(kwargs):
    model = nn.Sequential(dnn.Dropout(0.5, **kwargs))
    report = swap_dropout(model, reverse=True)
    assert report.replaced == [] and "no torch equivalent" in report.unreachable[0][1]


# --- MC dropout for any model --------------------------------------------------------------------


def _bn_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), dnn.Dropout(0.3), nn.Linear(16, 16),
                         nn.Dropout(0.2), nn.Linear(16, 4))  # fmt: skip


def test_mc_predict_turns_on_dropout_only_and_restores_every_modules_mode():
    from droplab import mc_predict

    model, x = _bn_model(), torch.randn(64, 6)
    model.train()
    model[1].eval()  # a mixed state, to be restored as it was
    stats = model[1].running_mean.clone()
    modes = [m.training for m in model.modules()]
    probs = mc_predict(model, x, samples=8, seed=3)
    assert torch.equal(model[1].running_mean, stats)  # batch norm stayed in eval: its statistics untouched
    assert [m.training for m in model.modules()] == modes
    assert probs.shape == (64, 4) and torch.allclose(probs.sum(1), torch.ones(64))
    eval_probs = torch.softmax(model.eval()(x), 1)
    assert not torch.allclose(probs, eval_probs)  # the dropout layers drew masks
    no_dropout = nn.Sequential(*[m for m in _bn_model() if not isinstance(m, nn.Dropout)]).eval()
    assert torch.allclose(mc_predict(no_dropout, x, samples=3), torch.softmax(no_dropout(x), 1))


def test_mc_predict_is_replayable_and_leaves_the_callers_random_state():
    from droplab import mc_predict

    model, x = _bn_model().eval(), torch.randn(16, 6)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = mc_predict(model, x, samples=5, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, mc_predict(model, x, samples=5, seed=7)) and not torch.equal(a, mc_predict(model, x, 5, 8))
    with pytest.raises(ValueError, match="samples = 0 is invalid: expected an integer >= 1"):
        mc_predict(model, x, samples=0)


def test_mc_predict_on_a_swapped_transformer_reaches_attention_dropout_too_and_feeds_calibration():
    from droplab import mc_predict
    from droplab.ensemble import expected_calibration_error, reliability

    model, x = encoder(), torch.randn(4, 5, 32)
    swap_dropout(model)
    head = nn.Sequential(model, nn.Flatten(1), nn.Linear(5 * 32, 3)).eval()
    probs = mc_predict(head, x, samples=4, seed=0)
    attention = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    assert all(not m.training for m in head.modules())  # all back in eval
    for m in model.modules():  # with only the attention's dropout left, MC still differs from eval
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    assert attention and not torch.allclose(mc_predict(head, x, 4), torch.softmax(head(x), 1))
    y = torch.tensor([0, 1, 2, 0])
    assert 0.0 <= expected_calibration_error(probs, y) <= 1.0 and reliability(probs, y, bins=5)


def test_mc_predict_warns_when_the_passes_do_not_vary_although_the_model_has_dropout():
    from droplab import mc_predict

    class Unused(nn.Module):  # a dropout layer its forward never calls
        def __init__(self):
            super().__init__()
            self.linear, self.dropout = nn.Linear(3, 2), nn.Dropout(0.5)

        def forward(self, x):
            return self.linear(x)

    with pytest.warns(UserWarning, match="all 4 passes gave the same probabilities"):
        mc_predict(Unused(), torch.randn(5, 3), samples=4)


def test_the_report_names_a_layer_whose_rate_forward_reads_instead_of_calling_it():
    class Attention(nn.Module):  # as Hugging Face's attention modules do: the rate passed on, the layer never called
        def __init__(self):
            super().__init__()
            self.dropout = nn.Dropout(0.1)

        def forward(self, x):
            return torch.nn.functional.softmax(x, -1) * (1 - (self.dropout.p if self.training else 0.0))

    model = nn.Sequential(Attention(), nn.Dropout(0.2))
    report = swap_dropout(model)
    assert sorted(report.replaced) == ["0.dropout", "1"] and type(model[0].dropout) is dnn.Dropout
    assert [name for name, _ in report.unreachable] == ["0"]
    assert "reads the rate of its layer 'dropout' (self.dropout.p)" in report.unreachable[0][1]
    assert swap_dropout(model).unreachable == report.unreachable  # named again once swapped


def test_subclasses_of_every_torch_dropout_are_reported_and_a_layer_that_runs_is_not_a_rate_reader():
    class MyAlpha(nn.AlphaDropout):
        def forward(self, x):
            return x

    class My2d(nn.Dropout2d):
        def forward(self, x):
            return x

    class Runs(nn.Module):  # reads its layer's rate and also calls the layer: the swap reaches it
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.1)

        def forward(self, x):
            return self.drop(x) * (1 - self.drop.p)

    model = nn.Sequential(MyAlpha(0.1), My2d(0.1), Runs())
    report = swap_dropout(model)
    assert report.replaced == ["2.drop"]
    assert dict(report.unreachable) == {
        "0": "MyAlpha, a subclass of torch's AlphaDropout, not the class itself: left as it is",
        "1": "My2d, a subclass of torch's Dropout2d, not the class itself: left as it is",
    }
