"""Noise layers other than dropout, DropConnect and max-norm.

Statistical bounds: 5 standard deviations of the estimator under the layer's distribution
(binomial counts; a sample mean; a sample variance, whose standard deviation is
sigma^2 * sqrt(2 / (n - 1)) for normal data).
"""

import math

import pytest
import torch

import droplab.weights
from droplab.nn import Dropout, _NoiseLayer
from droplab.noise import (
    AdditiveNoise,
    AlphaDropout,
    DropConnectLinear,
    GaussianDropout,
    NoRescaleDropout,
    StratifiedDropout,
    additive_noise,
    gaussian_dropout,
    max_norm_,
    no_rescale_dropout,
    noise_layer,
    stratified_dropout,
)

N = 1_000_000


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_gaussian_dropout_has_mean_one_and_dropouts_variance(p):
    torch.manual_seed(0)
    r = gaussian_dropout(torch.ones(N, dtype=torch.float64), p)
    var = p / (1 - p)
    assert abs(r.mean().item() - 1.0) < 5 * math.sqrt(var / N)
    assert abs(r.var().item() - var) < 5 * var * math.sqrt(2 / (N - 1))
    x = torch.randn(5)
    assert gaussian_dropout(x, p, training=False) is x


def test_additive_noise_has_the_given_std():
    torch.manual_seed(1)
    e = additive_noise(torch.zeros(N, dtype=torch.float64), 0.7)
    assert abs(e.mean().item()) < 5 * 0.7 / math.sqrt(N)
    assert abs(e.var().item() - 0.49) < 5 * 0.49 * math.sqrt(2 / (N - 1))


@pytest.mark.parametrize("p, n", [(0.5, 256), (0.1, 100), (0.9, 10), (0.3, 7)])
def test_stratified_dropout_keeps_exactly_n_minus_k_per_row(p, n):
    torch.manual_seed(2)
    y = stratified_dropout(torch.ones(300, n), p)
    k = round(p * n)
    assert ((y != 0).sum(dim=1) == n - k).all()
    assert torch.allclose(y[y != 0], torch.tensor(n / (n - k)))
    # every unit is dropped with probability k / n: 5 sigma binomial bound over 300 rows
    frac = (y == 0).float().mean(dim=0)
    assert (frac - k / n).abs().max() < 5 * math.sqrt((k / n) * (1 - k / n) / 300) + 1e-9


def test_no_rescale_dropout_shrinks_the_training_mean_and_not_the_test_output():
    torch.manual_seed(3)
    p = 0.5
    y = no_rescale_dropout(torch.ones(N), p)
    assert abs(y.mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / N)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    x = torch.randn(4, 4)
    m = NoRescaleDropout(p).eval()
    assert torch.equal(m(x), x)
    assert torch.equal(NoRescaleDropout(p, test_scale=True).eval()(x), x * (1 - p))


def test_dropconnect_drops_weights_in_training_and_is_linear_in_eval():
    torch.manual_seed(4)
    layer = DropConnectLinear(400, 500, p=0.3)
    x = torch.eye(400)  # row i of the output = column i of W^T masked, plus bias
    layer.eval()
    assert torch.allclose(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
    layer.train()
    w_seen = layer(x) - layer.bias  # (400, 500): the masked, rescaled weights, transposed
    dropped = (w_seen == 0).float().mean().item()
    n = 400 * 500
    assert abs(dropped - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)
    kept = w_seen != 0
    assert torch.allclose(w_seen[kept], (layer.weight.T / 0.7)[kept], rtol=1e-6)


def test_max_norm_clips_long_rows_only():
    lin = torch.nn.Linear(10, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0] * 10, [0.1] * 10, [0.0] * 10, [-5.0] + [0.0] * 9]))
    before = lin.weight.clone()
    max_norm_(lin, 2.0)
    norms = lin.weight.norm(dim=1)
    assert torch.allclose(norms[[0, 3]], torch.tensor([2.0, 2.0]))
    assert torch.equal(lin.weight[1:3], before[1:3])
    assert torch.allclose(lin.weight[0] / norms[0], before[0] / before[0].norm())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: gaussian_dropout(torch.ones(3), 1.0), r"has to be in \[0, 1\), but got 1.0 \(the variance"),
        (lambda: GaussianDropout(1.0), r"has to be in \[0, 1\), but got 1.0"),
        (lambda: gaussian_dropout(torch.ones(3), float("nan")), "between 0 and 1"),
        (lambda: additive_noise(torch.ones(3), -1.0), "sigma must be a finite number >= 0, got -1.0"),
        (lambda: AdditiveNoise(float("inf")), "sigma must be a finite number >= 0"),
        (lambda: StratifiedDropout(1.5), "between 0 and 1, but got 1.5"),
        (lambda: DropConnectLinear(3, 4, p=-0.1), "between 0 and 1, but got -0.1"),
        (lambda: max_norm_(torch.nn.Linear(2, 2), 0.0), "max-norm bound c must be a finite number > 0, got 0.0"),
        (lambda: noise_layer("salt", 0.5), "noise must be one of"),
        (lambda: stratified_dropout(torch.ones(3, dtype=torch.int64), 0.5), "floating-point tensor"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


P_LAYERS = [Dropout, GaussianDropout, StratifiedDropout, NoRescaleDropout]


@pytest.mark.parametrize("layer", P_LAYERS)
@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_layers_of_strength_p_share_one_check(layer, p):
    assert issubclass(layer, _NoiseLayer) or layer is Dropout  # Dropout is torch.nn.Dropout's subclass, same check
    with pytest.raises(ValueError, match=f"^dropout probability has to be between 0 and 1, but got {p}$"):
        layer(p)
    with pytest.raises(TypeError, match="real number in \\[0, 1\\], got '0.5'"):
        layer("0.5")


@pytest.mark.parametrize(
    "layer, text",
    [
        (Dropout(0.2), "Dropout(p=0.2, inplace=False)"),
        (Dropout(1, impl="reference"), "Dropout(p=1, inplace=False, impl='reference')"),  # p as given, as torch
        (GaussianDropout(0.3), "GaussianDropout(p=0.3)"),
        (StratifiedDropout(0), "StratifiedDropout(p=0.0)"),
        (NoRescaleDropout(0.5, test_scale=True), "NoRescaleDropout(p=0.5, test_scale=True)"),
        (AdditiveNoise(1), "AdditiveNoise(sigma=1.0)"),
        (AlphaDropout(0.1), "AlphaDropout(p=0.1, inplace=False)"),
        (DropConnectLinear(2, 3, p=0.25), "DropConnectLinear(in_features=2, out_features=3, bias=True, p=0.25)"),
    ],
)
def test_reprs_show_the_strength(layer, text):
    assert repr(layer) == text


def test_state_dict_keys_and_homes_are_unchanged():
    for layer in [*(cls(0.5) for cls in P_LAYERS), AdditiveNoise(0.5), AlphaDropout(0.5)]:
        assert layer.state_dict() == {}
    assert list(DropConnectLinear(2, 3).state_dict()) == ["weight", "bias"]
    assert (DropConnectLinear, max_norm_) == (droplab.weights.DropConnectLinear, droplab.weights.max_norm_)


@pytest.mark.parametrize(
    "function, layer",
    [
        (gaussian_dropout, GaussianDropout),
        (additive_noise, AdditiveNoise),
        (stratified_dropout, StratifiedDropout),
        (no_rescale_dropout, NoRescaleDropout),
    ],
)
def test_each_function_refers_to_its_layer_which_carries_the_docs(function, layer):
    assert f":class:`{layer.__name__}`" in function.__doc__
    for section in (".. math::", "Args:", "Shape:", "Examples::"):
        assert section in layer.__doc__, (layer.__name__, section)
