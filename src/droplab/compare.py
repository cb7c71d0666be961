"""The lecture's headline: the plain MLP against the scratch and concise dropout MLPs.

Every model is trained on the same seeds (for one seed all three start from the same
weights and see the minibatches in the same order), so differences are paired by seed.
Writes ``compare.json`` (``{model: {metric: [value per seed]}}``), ``compare.png`` (the
curves of the three models, mean ± std over seeds) and ``compare.md``, and keeps every
run's record (its configuration, history and summary) in the store of runs ``runs/``: the runs
are the study engine's jobs, trained here or on a Ray cluster (``backend``).

The lecture's claims are checked in the lecture's own budget (its learning rate and epochs,
scored at the last epoch, on the validation set the lecture names; nothing tuned, so nothing
chosen on it), paired by seed, as hypotheses declared here with their margins: 0.5 pp of
accuracy (the smallest gain worth a reader's attention on Fashion-MNIST, as the studies use) and
0.01 of loss for the gap (about a tenth of the plain network's gap at 10 epochs). Their p-values
are adjusted together (Holm); the studies (``droplab study``) test the same claims under the fair
protocol.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import atomic, plots, rundir
from .data import FashionMNIST
from .interrupt import StudyInterrupted
from .models import MODEL_NAMES
from .stats import mean_std, paired_estimate
from .studies.backends import Local, Tally, train
from .studies.jobs import FORMAT, config_key
from .studies.store import collect, open_store
from .train import Diverged, TrainConfig
from .verdicts import Claim, Hypothesis, Table, adjust

__all__ = ["TABLE_METRICS", "CompareResult", "compare", "format_table", "claims", "regime"]

# (key, heading, scale, unit digits)
TABLE_METRICS = [
    ("train_loss", "train loss", 1.0, 4),
    ("train_loss_eval", "train loss (eval)", 1.0, 4),
    ("val_loss", "val loss", 1.0, 4),
    ("val_acc", "val acc %", 100.0, 2),
    ("test_acc", "test acc %", 100.0, 2),
    ("gap", "gap", 1.0, 4),
    ("seconds", "seconds", 1.0, 1),
]


@dataclass
class CompareResult:
    directory: Path
    results: dict[str, dict[str, list[float]]]  # model -> metric -> per seed
    curves: dict[str, dict[str, np.ndarray]]  # model -> metric -> (seeds, epochs)
    seeds: list[int]
    base: TrainConfig | None = None  # the settings every model trained with (None: unknown)


def compare(
    data: FashionMNIST,
    seeds: int = 3,
    base: TrainConfig | None = None,
    out: str | Path | None = None,
    runs_root: str | Path = "runs",
    models: tuple[str, ...] = ("plain", "scratch", "concise"),
    backend=None,
    log: Callable[[str], None] = lambda line: None,
    progress: Callable | None = None,
) -> CompareResult:
    """Train each of ``models`` on seeds ``base.seed .. base.seed + seeds - 1``; write the files.

    The runs are the studies' jobs (:mod:`droplab.studies.jobs`), trained on ``backend`` (None:
    this process, with ``base.threads`` threads; or a :class:`~droplab.studies.ray_backend.RayBackend`)
    into a store of runs, ``runs/`` in the comparison's directory; ``log`` gets a line per run,
    ``progress`` the :class:`~droplab.studies.backends.Tally` as it changes.

    Raises:
        StudyInterrupted: SIGINT/SIGTERM stopped it; the finished runs stay in its ``runs/``.
        Diverged: a run's loss or gradient was not finite (its learning rate is too large for it).
    """
    base = (base or TrainConfig()).validate()
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds = {seeds!r} is invalid: expected an integer >= 1")
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}: expected one of {', '.join(MODEL_NAMES)}")
    backend = backend or Local(base.threads)
    backend.connect()  # before the directory is claimed: a cluster that cannot be reached leaves nothing behind
    with rundir.held(rundir.claim_new(out, runs_root, "compare")) as directory:
        seed_list = [base.seed + k for k in range(seeds)]
        atomic.write_json(
            directory / "config.json",
            {"seeds": seed_list, "models": list(models), "base": base.to_dict(), "data": data.source},
        )
        plan, threads = {}, backend.threads()
        for seed in seed_list:
            for model in models:
                cfg = dataclasses.replace(base, model=model, seed=seed, threads=threads, val_size=len(data.val_x))
                job = {"train": cfg.to_dict(), "probes": [], "format": FORMAT, "data": data.digest}
                plan[model, seed] = (config_key(job), job)
        store = open_store(directory / "runs")
        done, todo = collect(plan, store, log, len(data.test_x))
        try:
            train(todo, done, data, store, backend, Tally(total=len(plan), finished=len(done), show=progress), log)
        except StudyInterrupted as err:  # a comparison never resumes: it names where its finished runs are
            for stale in (store / "partial").glob("*.pt"):  # the checkpoints of the runs cut short
                stale.unlink(missing_ok=True)
            raise StudyInterrupted(err.signum, f"{err}; the finished runs are kept in {store}") from None
        if diverged := [(tag, r["diverged"]) for tag, r in done.items() if "diverged" in r]:
            (model, seed), d = diverged[0]
            raise Diverged(d["epoch"], d["step"], f"{d['what']} ({model}, seed {seed})", base.lr)
        return _write(directory, done, models, seed_list, base)


def _write(directory: Path, done: dict, models: tuple[str, ...], seed_list: list[int], base: TrainConfig
           ) -> CompareResult:  # fmt: skip
    """``compare.json``, ``compare.png`` and ``compare.md`` from the runs ``done`` ({(model, seed): record})."""
    keys = [key for key, *_ in TABLE_METRICS] + ["train_acc", "test_loss"]
    results = {m: {key: [done[m, s]["summary"][key] for s in seed_list] for key in keys} for m in models}
    curves = {
        m: {k: np.array([[h[k] for h in done[m, s]["history"]] for s in seed_list])
            for k in ("train_loss", "val_loss", "val_acc")}
        for m in models
    }  # fmt: skip
    result = CompareResult(directory, results, curves, seed_list, base)
    atomic.write_json(directory / "compare.json", results)
    title = f"Fashion-MNIST, {base.epochs} epochs, {len(seed_list)} seed(s), hidden {list(base.hidden)}"
    atomic.save_figure(directory / "compare.png", plots.compare_curves(curves, title=title))
    atomic.write_text(directory / "compare.md", markdown(result, base))
    return result


def _cell(values: list[float], scale: float, digits: int) -> str:
    mean, std = mean_std([v * scale for v in values])
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_table(result: CompareResult) -> list[list[str]]:
    """Rows of [model, metric cells...]: mean ± std over seeds."""
    header = ["model"] + [heading for _, heading, *_ in TABLE_METRICS]
    rows = [header]
    for model, res in result.results.items():
        rows.append([model] + [_cell(res[key], s, d) for key, _, s, d in TABLE_METRICS])
    return rows


def regime(result: CompareResult) -> str:
    """The setting the claims were measured in, in words, e.g. ``"lecture budget: lr 0.1, 10
    epochs, last epoch, 3 seeds, validation set"`` (``"as asked: ..."`` where the learning rate,
    epochs or optimizer differ from the lecture's)."""
    base, lecture = result.base or TrainConfig(), TrainConfig()
    same = (base.lr, base.epochs, base.optimizer) == (lecture.lr, lecture.epochs, lecture.optimizer)
    n = len(result.seeds)
    words = "lecture budget: lr" if same else f"as asked: {base.optimizer} lr"
    return f"{words} {base.lr:g}, {base.epochs} epochs, last epoch, {n} seed{'s' if n != 1 else ''}, validation set"


def claims(result: CompareResult) -> list[str]:
    """The lecture's claims, checked against these runs, paired by seed (Holm over all of them)."""
    if "plain" not in result.results:
        return []
    plain = result.results["plain"]
    made = []
    for model in (m for m in result.results if m != "plain"):
        r = result.results[model]
        for h, key, scale in (
            (Hypothesis(f"{model} dropout raises val accuracy over plain", margin=0.5), "val_acc", 100.0),
            (Hypothesis(f"{model} dropout shrinks the val-train loss gap", margin=0.01, expect_positive=False,
                        unit=""), "gap", 1.0),
        ):  # fmt: skip
            a, b = [v * scale for v in r[key]], [v * scale for v in plain[key]]
            per_seed = tuple(x - y for x, y in zip(a, b))
            made.append(Claim(h, paired_estimate(a, b), statistic=f"{key}: {model} − plain", regime=regime(result),
                              per_seed=per_seed))  # fmt: skip
    return [c.line() for c in adjust(made, "holm")]


def markdown(result: CompareResult, base: TrainConfig) -> str:
    """``compare.md``: the settings, the table, the claims and the curves."""
    rows = format_table(result)
    lines = [
        "# Dropout vs plain MLP on Fashion-MNIST",
        "",
        f"Hidden layers {list(base.hidden)}, dropout {list(base.dropout)} (plain: none), "
        f"{base.optimizer.upper()} lr {base.lr}, batch {base.batch_size}, {base.epochs} epochs, "
        f"seeds {result.seeds}. Mean ± std over seeds. *gap* = val loss − train loss, both in "
        "eval mode (dropout off); *train loss* is the mean over the last epoch's minibatches "
        "with dropout on.",
        "",
        Table("", rows[0], rows[1:]).markdown(),
    ]
    lines += ["", "## The lecture's claims, as measured here", ""]
    lines += [f"- {c}" for c in claims(result)]
    lines += [
        "",
        "Differences are paired by seed; the brackets are 95% t intervals; δ is the claim's margin, "
        "declared before the runs. *supported*: the difference is shown on the claimed side of 0; "
        "*contradicted*: shown on the other side; *equivalent*: shown within ±δ (two one-sided tests, "
        "TOST); *inconclusive*: none of these. The p-values are adjusted over the claims (Holm) and the "
        "adjusted ones decide; MDE is the smallest effect these seeds detect at 80% power.",
        "",
        "![curves](compare.png)",
        "",
    ]
    return "\n".join(lines)
