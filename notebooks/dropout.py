# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Dropout, on droplab
#
# The d2l lecture on dropout, told again with droplab's code: the operation, the two models,
# their training, the comparison with a plain MLP, and what droplab measures when it puts the
# lecture's expectations to the test over several seeds.
#
# Run it with `make notebook` (it writes `notebooks/dropout.ipynb` with every output), or open
# this file in Jupyter with jupytext. The data is Fashion-MNIST, found as the `droplab` command
# finds it: `DROPLAB_DATA`, droplab's cache, Debian's `dataset-fashion-mnist`, or a download.
# `DROPLAB_NOTEBOOK_QUICK=1` trains a couple of epochs on a few hundred images: the setting the
# tests run it in, not one to read results from.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Image, Markdown, display

from droplab import plots
from droplab.data import find_data_dir, load_fashion_mnist
from droplab.functional import dropout, dropout_reference
from droplab.models import DropoutMLP, DropoutMLPScratch, build_model
from droplab.studies import STUDIES, run_study
from droplab.train import TrainConfig, fit

# %matplotlib inline

QUICK = os.environ.get("DROPLAB_NOTEBOOK_QUICK", "") not in ("", "0")
EPOCHS = 2 if QUICK else 10  # the lecture's run: 10 epochs
TRAIN_SIZE = 300 if QUICK else 0  # 0: every training image (55,000)
VAL_SIZE = 100 if QUICK else 5000  # images held out of the training set for validation
STUDY_SEEDS = 2 if QUICK else 5


def show(fig):
    """Draw a figure in the notebook, once, and free it."""
    display(fig)
    plt.close(fig)


def table(headers, rows):
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return Markdown("\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows]))


# %% [markdown]
# ## 1. The operation
#
# While a network trains, dropout sets each hidden unit to zero with probability $p$ and
# multiplies the units it keeps by $1/(1-p)$:
#
# $$h' = \begin{cases} 0 & \text{with probability } p, \\ \dfrac{h}{1-p} & \text{otherwise,} \end{cases}
# \qquad \mathbb{E}[h'] = h.$$
#
# The factor keeps each unit's expected value where it was, so nothing needs changing when
# dropout is switched off for evaluation. `droplab.functional.dropout_reference` is this
# formula written to be read (a uniform draw per element, kept where it exceeds $p$);
# `droplab.functional.dropout` computes the same operation with a counter-based mask that
# backward regenerates instead of storing.
#
# The lecture's first check: a 2×8 input at $p = 0$ (unchanged), $p = 0.5$ (about half
# zeroed, the rest doubled) and $p = 1$ (all zeros).

# %%
X = torch.arange(16, dtype=torch.float32).reshape(2, 8)
torch.manual_seed(0)
for p in (0.0, 0.5, 1.0):
    print(f"dropout_reference(X, p={p}):\n{dropout_reference(X, p)}\n")

# %% [markdown]
# Both implementations, on a million ones: the fraction kept should be close to $1-p$ and
# the mean close to 1, the input's value.

# %%
ones = torch.ones(1_000_000)
rows = []
for name, fn in (("dropout_reference", dropout_reference), ("dropout", dropout)):
    torch.manual_seed(0)
    for p in (0.1, 0.5, 0.9):
        out = fn(ones, p)
        rows.append([name, p, f"{(out != 0).float().mean().item():.4f}", f"{1 - p:.4f}", f"{out.mean().item():.4f}"])
table(["function", "p", "kept fraction", "1 − p", "mean of h′"], rows)

# %% [markdown]
# ## 2. Two models
#
# The lecture's network has two hidden layers of 256 units, each followed by ReLU and then
# dropout, with a lower rate allowed on the first:
#
# `Linear → ReLU → Dropout(p₁) → Linear → ReLU → Dropout(p₂) → Linear`
#
# `DropoutMLPScratch` calls the dropout function itself in `forward`, only while
# `self.training` is true. `DropoutMLP` is the concise version: an `nn.Sequential` with
# PyTorch's `nn.Dropout` layers, which follow `train()` and `eval()` on their own.

# %%
scratch = DropoutMLPScratch(10, 256, 256, 0.5, 0.5)
concise = DropoutMLP(10, 256, 256, 0.5, 0.5)
print(scratch)
print(concise)

# %% [markdown]
# In training mode two calls on the same input give different outputs (two masks); in
# evaluation mode the network is deterministic.

# %%
x = torch.rand(4, 784)
for model in (scratch, concise):
    model.train()
    trained = torch.equal(model(x), model(x))
    model.eval()
    evaluated = torch.equal(model(x), model(x))
    print(f"{type(model).__name__}: same output twice in train mode: {trained}; in eval mode: {evaluated}")

# %% [markdown]
# droplab builds every model's linear layers in the same order, so for one seed the scratch,
# concise and plain models start from identical weights, and comparisons between them are
# paired: they differ only in their dropout.

# %%
first_layers = []
for name in ("scratch", "concise", "plain"):
    torch.manual_seed(0)
    model = build_model(name, (256, 256), (0.5, 0.5))
    first_layers.append(next(m for m in model.modules() if isinstance(m, torch.nn.Linear)).weight)
print("identical first-layer weights:", all(torch.equal(first_layers[0], w) for w in first_layers[1:]))

# %% [markdown]
# ## 3. Training
#
# The lecture's setting: SGD with learning rate 0.1, minibatches of 256, dropout 0.5 on both
# hidden layers. Each epoch ends with an evaluation (dropout off) on the training images and
# on the held-out validation images.

# %%
data_dir = find_data_dir()
data = load_fashion_mnist(data_dir, val_size=VAL_SIZE, verify=not QUICK)  # the tests' small files are not official
print(f"{len(data.train_x):,} training, {len(data.val_x):,} validation, {len(data.test_x):,} test images")


def train(model: str):
    cfg = TrainConfig(model=model, epochs=EPOCHS, train_size=TRAIN_SIZE, val_size=VAL_SIZE, seed=0)

    def report(row):
        print(f"{model:8s} epoch {row['epoch']:2d}: train loss {row['train_loss']:.4f}, "
              f"val loss {row['val_loss']:.4f}, val acc {100 * row['val_acc']:.2f}%")

    return fit(cfg, data, on_epoch=report)


runs = {"scratch": train("scratch")}
show(plots.run_curves(runs["scratch"].history, "DropoutMLPScratch, seed 0"))

# %% [markdown]
# `train_loss` is the mean over the epoch's minibatches with dropout on; `val_loss` and
# `val_acc` are measured with dropout off. The concise model trains the same way, from the
# same weights; its masks come from PyTorch's dropout rather than droplab's kernel, so its
# numbers need not match the scratch model's exactly.

# %%
runs["concise"] = train("concise")
show(plots.run_curves(runs["concise"].history, "DropoutMLP (concise), seed 0"))

# %% [markdown]
# ## 4. Against the plain MLP
#
# The same network without dropout, from the same initial weights and with the same
# minibatch order. The *gap* is the validation loss minus the training loss, both measured
# with dropout off.

# %%
runs["plain"] = train("plain")
curves = {  # model -> metric -> array of shape (seeds, epochs): here one seed
    name: {key: np.array([[h[key] for h in runs[name].history]]) for key in ("train_loss", "val_loss", "val_acc")}
    for name in ("plain", "scratch", "concise")
}
show(plots.compare_curves(curves, f"plain vs dropout, seed 0, {EPOCHS} epochs"))
table(
    ["model", "train loss (dropout on)", "train loss (eval)", "val loss", "val acc %", "test acc %", "gap"],
    [
        [name, *(f"{s[k]:.4f}" for k in ("train_loss", "train_loss_eval", "val_loss")),
         f"{100 * s['val_acc']:.2f}", f"{100 * s['test_acc']:.2f}", f"{s['gap']:.4f}"]
        for name, s in ((name, runs[name].summary) for name in ("plain", "scratch", "concise"))
    ],
)

# %% [markdown]
# These are one seed's numbers. Another seed (other initial weights, another minibatch
# order, other masks) moves each of them, so one run cannot say whether a difference
# between the models is larger than that spread. Answering that takes several seeds.

# %% [markdown]
# ## 5. The lecture's expectations, measured: the headline study
#
# droplab's `headline` study gives each network its best learning rate first (tuned on
# validation, on seeds of its own), then trains the plain network and the network with
# dropout 0.5 on fresh seeds, keeps each run's best epoch on validation, and scores it once
# on the test set. Each expectation was declared before the runs, with a margin δ: the
# smallest difference that matters. The outcome is *supported* or *contradicted* when the
# difference is shown on the claimed side of zero or on the other, *equivalent* when it is
# shown to lie within ±δ, and *inconclusive* otherwise; its uncertainty counts the seeds and
# the test images, and its p-values are adjusted for the study's number of claims
# (docs/statistics.md). Here it runs in its quick setting (2 epochs on at most 2,000 training
# images), so its outcomes are about that setting only.

# %%
headline = STUDIES["headline"]
print(headline.title)
print(headline.question)
with tempfile.TemporaryDirectory() as tmp:
    report = run_study(
        headline, data_dir, Path(tmp) / "headline", seeds=STUDY_SEEDS, quick=True, val_size=VAL_SIZE, verify=not QUICK
    )
    figures = [Image(filename=str(Path(tmp) / "headline" / name)) for name in report["figures"]]
for claim in report["claims"]:
    print(claim["line"])

# %%
for t in report["tables"]:
    display(Markdown(f"**{t['title']}**"), table(t["headers"], t["rows"]))
for figure in figures:
    display(figure)

# %% [markdown]
# What this run found, claim by claim (written from the measured numbers above):

# %%
def difference(claim):
    """The claim's mean paired difference: accuracies in percentage points, losses as they are."""
    return f"{claim['estimate']:+.2f} pp" if claim["unit"] == "pp" else f"{claim['estimate']:+.4f}"


Markdown("\n".join(
    f"- *{c['text']}*: **{c['outcome']}** (mean difference {difference(c)} over {c['seeds']} seeds, "
    f"margin ±{c['margin']:g})"
    for c in report["claims"]
))

# %% [markdown]
# An outcome holds for the setting it was measured in: these seeds, these epochs, this much
# data (each line ends with it). *Inconclusive* is a result too: with these seeds, the
# difference can be told apart neither from zero nor from the margin; the line's MDE says
# which difference the design could have resolved. The full study is `droplab study
# headline` (up to 20 epochs on all 55,000 training images, 10 seeds); `droplab study list` names
# the others (rates per layer, longer training, weight decay, DropConnect, other kinds of
# noise, ...), which put the rest of the lecture's claims to the same kind of test.
