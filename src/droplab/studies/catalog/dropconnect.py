"""Exercise 6: DropConnect, dropping weights instead of activations."""

from __future__ import annotations

from .common import dropout, leaderboard_study, plain

leaderboard_study(
    name="dropconnect",
    title="DropConnect: dropping weights instead of activations (exercise 6)",
    question="Does dropping weights regularize like dropping activations?",
    variants=[plain(), dropout(), dropout("dropconnect 0.5", noise="dropconnect")],
    claims=[
        ("dropconnect raises validation accuracy over plain", "dropconnect 0.5", "plain"),
        ("dropconnect beats dropout", "dropconnect 0.5", "dropout 0.5"),
        ("dropout raises validation accuracy over plain", "dropout 0.5", "plain"),
    ],
    order=70,
)
