"""Exercise 6: DropConnect, dropping weights instead of activations."""

from __future__ import annotations

from ..registry import Study, register
from .common import BASE, dropout, fixed, plain, versus

register(
    Study(
        "dropconnect",
        "DropConnect: dropping weights instead of activations (exercise 6)",
        "Does dropping weights regularize like dropping activations?",
        fixed(plain(), dropout(), dropout("dropconnect 0.5", noise="dropconnect")),
        # (text, a, b): a beats b on validation accuracy. The four leaderboard studies (dropconnect,
        # noise, normalization, regularizers) are declared alike: a deliberate parallel of data.
        versus(
            [
                ("dropconnect raises validation accuracy over plain", "dropconnect 0.5", "plain"),
                ("dropconnect beats dropout", "dropconnect 0.5", "dropout 0.5"),
                ("dropout raises validation accuracy over plain", "dropout 0.5", "plain"),
            ]
        ),
        base=BASE,
    )
)
