"""Calibration and Monte-Carlo averaging (droplab.ensemble) against examples computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from droplab.ensemble import (
    accuracy_nll,
    accuracy_vs_confidence,
    expected_calibration_error,
    predict_mc,
    predict_scaled,
    reliability,
)

# Four predictions, two classes. Confidences 0.85, 0.85 (one right, one wrong: overconfident by
# 0.35) and 0.65, 0.65 (both right: underconfident by 0.35).
PROBS = torch.tensor([[0.85, 0.15], [0.85, 0.15], [0.65, 0.35], [0.35, 0.65]], dtype=torch.float64)
LABELS = torch.tensor([0, 1, 0, 1])


def test_reliability_bins_by_hand():
    rows = reliability(PROBS, LABELS, bins=10)
    assert [r["count"] for r in rows] == [0, 0, 0, 0, 0, 0, 2, 0, 2, 0]
    assert rows[6]["low"] == pytest.approx(0.6) and rows[6]["high"] == pytest.approx(0.7)
    assert rows[6]["confidence"] == pytest.approx(0.65) and rows[6]["accuracy"] == 1.0
    assert rows[8]["confidence"] == pytest.approx(0.85) and rows[8]["accuracy"] == 0.5
    assert all(math.isnan(r["accuracy"]) and math.isnan(r["confidence"]) for r in rows if not r["count"])


def test_reliability_bin_edges_belong_to_the_lower_bin_and_the_first_bin_holds_its_low_edge():
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.75, 0.25]], dtype=torch.float64)
    rows = reliability(probs, torch.tensor([0, 0, 1]), bins=2)
    assert [r["count"] for r in rows] == [1, 2]  # 0.5 in [0, 0.5]; 0.75 and 1.0 in (0.5, 1]
    assert rows[1]["confidence"] == pytest.approx(0.875) and rows[1]["accuracy"] == 0.5


def test_ece_sums_the_absolute_gaps_weighted_by_bin_size():
    # |0.5 - 0.85| * 2/4 + |1.0 - 0.65| * 2/4 = 0.35; without the absolute value the gaps cancel to 0
    assert expected_calibration_error(PROBS, LABELS, bins=10) == pytest.approx(0.35)
    # perfectly calibrated: confidence 0.75 and three of four right
    probs = torch.tensor([[0.75, 0.25]] * 4, dtype=torch.float64)
    assert expected_calibration_error(probs, torch.tensor([0, 0, 0, 1]), bins=10) == pytest.approx(0.0, abs=1e-12)
    # always wrong at confidence 0.9: ECE 0.9
    probs = torch.tensor([[0.9, 0.1]] * 3, dtype=torch.float64)
    assert expected_calibration_error(probs, torch.tensor([1, 1, 1]), bins=15) == pytest.approx(0.9)


def test_accuracy_nll_and_accuracy_vs_confidence_by_hand():
    acc, nll = accuracy_nll(PROBS, LABELS)
    assert acc == 0.75 and nll == pytest.approx(-(math.log(0.85) + math.log(0.15) + 2 * math.log(0.65)) / 4)
    rows = accuracy_vs_confidence(PROBS, LABELS, thresholds=(0.0, 0.7, 0.9))
    assert [(r["threshold"], r["coverage"]) for r in rows] == [(0.0, 1.0), (0.7, 0.5), (0.9, 0.0)]
    assert rows[0]["accuracy"] == 0.75 and rows[1]["accuracy"] == 0.5 and math.isnan(rows[2]["accuracy"])


# A one-feature net: inverted dropout at p = 0.5 on its input, then logits (w x, -w x). With
# w x = ln(3) / 2 the full network (eval) gives softmax = (3/4, 1/4); a thinned pass either drops
# the input (logits 0: (1/2, 1/2)) or doubles it (logits ±ln 3: (9/10, 1/10)).
KEPT, DROPPED, SCALED = torch.tensor([0.9, 0.1]), torch.tensor([0.5, 0.5]), torch.tensor([0.75, 0.25])


def tiny_net() -> nn.Module:
    linear = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    return nn.Sequential(nn.Dropout(0.5), linear)


X = torch.full((3, 1), math.log(3) / 2)


def test_predict_scaled_is_the_full_network_in_eval_mode():
    model = tiny_net().train()
    probs = predict_scaled(model, X)
    assert torch.allclose(probs, SCALED.expand(3, 2), atol=1e-6) and model.training  # its mode is restored


def test_predict_mc_averages_thinned_networks():
    model = tiny_net().eval()
    state = torch.get_rng_state()
    out = predict_mc(model, X, ks=(1, 2, 5, 400), seed=3)
    assert torch.equal(torch.get_rng_state(), state) and not model.training  # the caller's RNG and mode untouched
    kept = {}
    for k, probs in out.items():
        # each row: the mean of k passes, each KEPT or DROPPED: (m / k) KEPT + (1 - m / k) DROPPED, m whole
        share = (probs[:, 0] - DROPPED[0]) / (KEPT[0] - DROPPED[0])
        m = share * k
        assert torch.allclose(m, m.round(), atol=1e-3), (k, m)
        assert torch.allclose(probs.sum(dim=1), torch.ones(3), atol=1e-6)
        kept[k] = m.round()
    assert set(kept[1].tolist()) <= {0.0, 1.0}
    for a, b in ((1, 2), (2, 5), (5, 400)):  # the first k passes of one sequence: the kept passes only grow
        assert ((kept[b] - kept[a]) >= 0).all() and ((kept[b] - kept[a]) <= b - a).all()
    # about half the passes keep the input: the average is near 0.7 = (0.9 + 0.5) / 2, not the scaled 0.75
    assert torch.allclose(out[400][:, 0], torch.full((3,), 0.7), atol=0.04)
    assert torch.equal(predict_mc(model, X, ks=(400,), seed=3)[400], out[400])  # same seed, same masks
    assert not torch.equal(predict_mc(model, X, ks=(400,), seed=4)[400], out[400])


def test_predict_mc_refuses_bad_ks():
    with pytest.raises(ValueError, match="ks must be positive integers"):
        predict_mc(tiny_net(), X, ks=(0, 2))
    with pytest.raises(ValueError, match="ks must be positive integers"):
        predict_mc(tiny_net(), X, ks=())
