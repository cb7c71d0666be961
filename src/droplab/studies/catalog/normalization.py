"""Dropout against BatchNorm and LayerNorm, and dropout added to each."""

from __future__ import annotations

from ..registry import Study, register
from .common import BASE, dropout, fixed, plain, versus

register(
    Study(
        "normalization",
        "Dropout vs BatchNorm vs LayerNorm",
        "The lecture: modern networks often replace dropout with normalization. Does either beat dropout here, "
        "and does dropout still add to them?",
        fixed(
            plain(),
            dropout(),
            plain("batchnorm", norm="batch"),
            plain("layernorm", norm="layer"),
            dropout("batchnorm + dropout", norm="batch"),
            dropout("layernorm + dropout", norm="layer"),
        ),
        # (text, a, b): a beats b on validation accuracy. The four leaderboard studies (dropconnect,
        # noise, normalization, regularizers) are declared alike: a deliberate parallel of data.
        versus(
            [
                ("BatchNorm alone beats dropout alone", "batchnorm", "dropout 0.5"),
                ("LayerNorm alone beats dropout alone", "layernorm", "dropout 0.5"),
                ("dropout adds to BatchNorm", "batchnorm + dropout", "batchnorm"),
                ("dropout adds to LayerNorm", "layernorm + dropout", "layernorm"),
            ]
        ),
        base=BASE,
    )
)
