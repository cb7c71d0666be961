"""The lecture's last claim: Transformers still ship dropout, at about 10 %. Is 0.1 about the best single
rate for a small Vision Transformer, does stochastic depth add to it, and does LayerNorm make a net need
less dropout?

Setting: the ViT of :mod:`droplab.vit` at width 32, depth 2, 2 heads, 7x7 patches (16 tokens),
pre-LayerNorm, trained with Adam on 5,000 training images, up to 12 epochs, each run keeping its
validation-best epoch; learning rates tuned over {0.001, 0.003} (widened where an end is chosen).
One rate ``p`` is applied at the ViT's three dropout sites (the attention probabilities, the
attention's output projection, the MLP); DropPath is 0 unless named. Whether this regime overfits
or underfits is measured, not assumed: the leaderboard shows each variant's chosen epoch and its
validation − training loss gap. For LayerNorm, the lecture's MLP architecture (784-256-256, ReLU),
trained with Adam in the same setting, with and without LayerNorm after each hidden layer: the same
architecture, so that only the normalization differs.

Claims, declared before any run (margins: 0.5 pp of test accuracy for a difference of two nets, 1 pp
for a contrast of four, as in the other studies):

- *about 0.1* (primary): the rate 0.1 is no more than 0.5 pp below any other rate of the grid {0,
  0.05, 0.2, 0.3}. Tested as an intersection–union test: the non-inferiority of 0.1 against each
  other rate on the confirmation seeds, the claim measured against the least favourable one (the
  lowest t statistic of ``(0.1 − other) + 0.5``), whose p-value is the largest of the four, so no
  multiplicity penalty is needed for "supported" (a "contradicted" against the least favourable
  rate is not Bonferroni-corrected for the choice among four: the note prints all four). The
  note also names every rate that passes the same test against all the others: when 0 passes
  too, the rate hardly matters in this setting, and "about 0.1" says little.
- the ViT's dropout at 0.1 raises test accuracy over none;
- DropPath rising to 0.1 (0 in the first block, 0.1 in the second, timm's linear rule) adds to
  dropout 0.1;
- LayerNorm makes the MLP architecture gain less from dropout 0.3: the contrast
  ``[MLP 0.3 − MLP 0] − [MLP+LayerNorm 0.3 − MLP+LayerNorm 0]`` above 0. Beside it, the same
  contrast with the ViT in place of the LayerNorm MLP is printed as a note (architecture, size and
  dropout sites differ there, not only LayerNorm).

With 4 confirmation seeds most claims are expected to be inconclusive unless the effects are large
(each claim's line prints its minimal detectable effect and the seeds it would need).

Budget: 30 minutes on 2 cores at its defaults. 10 variants x (2 rates x 2 tuning seeds + 4 confirmation
seeds) = 80 runs, and up to 40 more if every grid widens twice. The full run trained 102 runs in 388 s of
wall time on a quiet 2-core AMD EPYC (1,852 s with the cores shared; docs/studies.md).
"""

from __future__ import annotations

from ...stats import t_quantile
from ...verdicts import Claim, Hypothesis
from ..registry import Analysis, Variant, study
from ..results import Results
from .common import contrast, contrast_claim, identical, leaderboard

RATES = (0.0, 0.05, 0.1, 0.2, 0.3)
VIT = {"model": "vit", "vit_width": 32, "vit_depth": 2, "vit_heads": 2, "vit_patch": 7}
BASE = {"train_size": 5_000, "eval_train_size": 2_000, "optimizer": "adam"}

ABOUT = Hypothesis("the rate 0.1 at the ViT's dropout sites is about the best single rate: no more than 0.5 pp "
                   "below any other rate of {0, 0.05, 0.2, 0.3} in test accuracy (the least favourable shown)",
                   kind="noninferiority", margin=0.5, primary=True)  # fmt: skip
RAISES = Hypothesis("the ViT's dropout at 0.1 raises test accuracy over no dropout", margin=0.5)
DROP_PATH = Hypothesis("DropPath rising to 0.1 (0 in block 1, 0.1 in block 2) adds to the ViT's dropout 0.1",
                       margin=0.5)  # fmt: skip
LESS = Hypothesis("LayerNorm makes the MLP architecture gain less from dropout 0.3 (Adam, 5,000 images): "
                  "[MLP 0.3 − MLP 0] − [MLP+LayerNorm 0.3 − MLP+LayerNorm 0]", margin=1.0)  # fmt: skip


QUICK_VIT = {**VIT, "vit_width": 16, "vit_depth": 1}  # the quick setting (tests, CI): a smaller ViT, fewer rates
QUICK_RATES = (0.0, 0.1, 0.3)


def vit(p: float, drop_path: float = 0.0, shape: dict = VIT) -> Variant:
    """The ViT with rate ``p`` at its three dropout sites (and ``drop_path``)."""
    name = f"vit {p:g}" + (f" + drop path {drop_path:g}" if drop_path else "")
    rates = {"vit_attention_dropout": p, "vit_projection_dropout": p, "vit_mlp_dropout": p}
    return Variant(name, {**shape, **rates, "vit_drop_path": drop_path})


def mlp(p: float, norm: str = "none") -> Variant:
    """The lecture's MLP architecture (784-256-256, ReLU) with dropout ``p`` on both hidden layers (and ``norm``)."""
    name = f"mlp{'+layernorm' if norm == 'layer' else ''} {p:g}"
    return Variant(name, {"model": "mlp", "hidden": (256, 256), "dropout": (p, p),
                          **({"norm": norm} if norm != "none" else {})})  # fmt: skip


def variants(quick: bool) -> list[Variant]:
    shape, rates = (QUICK_VIT, QUICK_RATES) if quick else (VIT, RATES)
    return [*(vit(p, shape=shape) for p in rates), vit(0.1, 0.1, shape), mlp(0.0), mlp(0.3), mlp(0.0, "layer"),
            mlp(0.3, "layer")]


@study(
    name="transformer",
    title="A small Vision Transformer: the best single dropout rate (about 0.1?), DropPath, and LayerNorm",
    question="Transformers still ship dropout at about 10 %. For a small ViT on 5,000 images: is 0.1 about the "
    "best single rate over {0, 0.05, 0.1, 0.2, 0.3}; does DropPath add to it; does LayerNorm make a net gain "
    "less from dropout?",
    variants=variants,
    base=BASE,
    order=140,
    hypotheses=[ABOUT, RAISES, DROP_PATH, LESS],
    max_epochs=12,
    seeds=4,
    lr_grid=(1e-3, 3e-3),
    regime="5,000 training images; ViT width 32, depth 2, Adam; MLP 256-256 (± LayerNorm) with Adam",
    in_all=False,  # too long for the suite's budget: run by name (the engine prints its estimate first)
    budget_minutes=30,
)
def analyze(r: Results) -> Analysis:
    about, notes = _about(r)
    vit_contrast, _ = contrast(r, {"mlp 0.3": 1.0, "mlp 0": -1.0, "vit 0.3": -1.0, "vit 0": 1.0})
    iv = vit_contrast.interval()
    notes.append(f"[MLP 0.3 − MLP 0] − [ViT 0.3 − ViT 0] = {vit_contrast.mean:+.2f} pp [{iv.low:+.2f}, "
                 f"{iv.high:+.2f}] (not a claim: architecture, size and dropout sites differ, not only LayerNorm)")
    less = contrast_claim(r, LESS, {"mlp 0.3": 1.0, "mlp 0": -1.0, "mlp+layernorm 0.3": -1.0,
                                    "mlp+layernorm 0": 1.0})  # fmt: skip
    claims = [about, r.claim(RAISES, "vit 0.1", "vit 0"), r.claim(DROP_PATH, "vit 0.1 + drop path 0.1", "vit 0.1"),
              less]  # fmt: skip
    table, fig = leaderboard(r, "leaderboard by test accuracy (each run at its val-chosen epoch)")
    return Analysis(claims, [table], {"leaderboard": fig}, [*notes, *identical(r)])


def _rates(r: Results) -> list[str]:
    return [v.name for v in r.variants if v.name.startswith("vit ") and "drop path" not in v.name]


def _t(r: Results, a: str, b: str) -> float:
    """The non-inferiority t statistic of ``a − b`` against −0.5 pp (lower: less favourable to ``a``)."""
    e = r.difference(a, b)
    return (e.mean + ABOUT.margin) / e.se if e.se > 0 else float("inf") if e.mean + ABOUT.margin > 0 else -float("inf")


def _about(r: Results) -> tuple[Claim, list[str]]:
    """Rate 0.1 against the least favourable other rate (an intersection–union test), and notes: every
    difference, and the rates that would pass the same test against all the others."""
    rates = _rates(r)
    others = [name for name in rates if name != "vit 0.1"]
    worst = min(others, key=lambda name: _t(r, "vit 0.1", name))
    lines = []
    for name in others:
        e = r.difference("vit 0.1", name)
        iv = e.interval()
        lines.append(f"{name}: {e.mean:+.2f} pp [{iv.low:+.2f}, {iv.high:+.2f}]")
    notes = [f"vit 0.1 − each other rate (test accuracy): {'; '.join(lines)}; least favourable: {worst}"]
    passing = [a for a in rates if all(_passes(r, a, b) for b in rates if b != a)]
    notes.append(f"rates no more than 0.5 pp below every other rate at the 5% level (one-sided, each against all "
                 f"the others): {', '.join(passing) or 'none'}" + (" — 0 among them: the rate hardly matters here"
                                                                     if "vit 0" in passing else ""))  # fmt: skip
    return r.claim(ABOUT, "vit 0.1", worst), notes


def _passes(r: Results, a: str, b: str) -> bool:
    e = r.difference(a, b)
    return bool(e.se > 0 and e.mean + ABOUT.margin > t_quantile(0.95, e.df) * e.se)
