"""Dropout against BatchNorm and LayerNorm, and dropout added to each."""

from __future__ import annotations

from .common import dropout, leaderboard_study, plain

leaderboard_study(
    name="normalization",
    title="Dropout vs BatchNorm vs LayerNorm",
    question="The lecture: modern networks often replace dropout with normalization. Does either beat dropout here, "
    "and does dropout still add to them?",
    variants=[
        plain(),
        dropout(),
        plain("batchnorm", norm="batch"),
        plain("layernorm", norm="layer"),
        dropout("batchnorm + dropout", norm="batch"),
        dropout("layernorm + dropout", norm="layer"),
    ],
    claims=[
        ("BatchNorm alone beats dropout alone", "batchnorm", "dropout 0.5"),
        ("LayerNorm alone beats dropout alone", "layernorm", "dropout 0.5"),
        ("dropout adds to BatchNorm", "batchnorm + dropout", "batchnorm"),
        ("dropout adds to LayerNorm", "layernorm + dropout", "layernorm"),
    ],
    order=100,
)
