"""Exercise 7: other noise at each layer, on a leaderboard against dropout 0.5."""

from __future__ import annotations

from ..registry import Variant
from .common import dropout, leaderboard_study, plain

leaderboard_study(
    name="noise",
    title="Other noise at each layer (exercise 7): a leaderboard on 784-256-256-10",
    question="Gaussian multiplicative noise with dropout's variance, additive Gaussian noise (σ = 1), alpha dropout "
    "(p = 0.1), and droplab's stratified dropout (exactly p·n units dropped per example), against dropout 0.5.",
    variants=[
        plain(),
        dropout(),
        dropout("gaussian (var 1)", noise="gaussian"),
        dropout("additive σ=1", noise="additive"),
        Variant("alpha 0.1", {"dropout": (0.1, 0.1), "noise": "alpha"}),
        dropout("stratified 0.5", noise="stratified"),
    ],
    claims=[
        ("dropout raises validation accuracy over plain", "dropout 0.5", "plain"),
        ("Gaussian multiplicative noise beats dropout", "gaussian (var 1)", "dropout 0.5"),
        ("additive noise beats dropout", "additive σ=1", "dropout 0.5"),
        ("alpha dropout beats dropout", "alpha 0.1", "dropout 0.5"),
        ("stratified dropout beats dropout", "stratified 0.5", "dropout 0.5"),
    ],
    order=80,
)
