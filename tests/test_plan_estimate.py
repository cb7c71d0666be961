"""A study's time estimate: each kind of run's step timed on this machine, the runs' steps and evaluated
images at those rates, scaled by the store's runs; and a study's declared budget printed beside it."""

import dataclasses

import pytest
import torch

from droplab.studies import STUDIES, engine, run_study
from droplab.studies import plan as plan_module
from droplab.studies.plan import EPOCH_SECONDS, estimate_seconds, run_steps
from droplab.studies.protocol import Protocol
from droplab.train import TrainConfig
from droplab.train.timing import time_step

SIZES = (1_000, 200, 300)  # training, validation and test images
MLP = TrainConfig(hidden=(16,), dropout=(0.5,), batch_size=100, epochs=3, threads=1).to_dict()
VIT = TrainConfig(model="vit", vit_width=8, vit_depth=1, vit_heads=2, batch_size=100, epochs=2, threads=1).to_dict()


RATES = {"vit": (0.02, 2e-5), "mlp": (0.002, 1e-6)}  # seconds of a step, of evaluating an image (CPU-like)


@pytest.fixture
def timed(monkeypatch):
    """time_step replaced by fixed rates per model (the arithmetic is tested, not this machine): the calls made."""
    calls = []

    def fake(cfg):
        calls.append(cfg)
        return RATES["vit" if cfg.model == "vit" else "mlp"]

    monkeypatch.setattr(plan_module, "time_step", fake)
    return calls


def test_a_run_is_its_steps_and_evaluated_images_at_its_kinds_rates(timed):
    steps, images = run_steps(VIT, *SIZES)
    assert (steps, images) == (2 * 10, 2 * (1_000 + 200) + 300)
    seconds, basis = estimate_seconds([{"train": VIT}], [], *SIZES)
    assert seconds == pytest.approx(0.02 * steps + 2e-5 * images + EPOCH_SECONDS * 2)
    mlp_steps, mlp_images = run_steps(MLP, *SIZES)
    both, _ = estimate_seconds([{"train": VIT}, {"train": MLP}], [], *SIZES)
    assert both == pytest.approx(seconds + 0.002 * mlp_steps + 1e-6 * mlp_images + EPOCH_SECONDS * 3)
    assert basis == "one step of each of its 1 kinds of run timed on this machine"


def test_each_kind_of_run_is_timed_once(timed):
    jobs = [{"train": {**MLP, "seed": s, "lr": lr}} for s in range(3) for lr in (0.1, 0.3)]  # one kind: same cost
    _, basis = estimate_seconds([*jobs, {"train": {**MLP, "hidden": (32,)}}], [], *SIZES)
    assert len(timed) == 2 and "its 2 kinds" in basis
    assert [c.hidden for c in timed] == [(16,), (32,)]


def test_the_store_scales_the_estimate(timed):
    alone, _ = estimate_seconds([{"train": MLP}], [], *SIZES)
    slower = {"job": {"train": MLP}, "summary": {"seconds": 3 * alone}}
    diverged = {"job": {"train": MLP}, "diverged": {"what": "loss = nan"}}  # stopped early: times nothing
    scaled, basis = estimate_seconds([{"train": MLP}], [slower, diverged], *SIZES)
    assert scaled == pytest.approx(3 * alone) and basis == "from the 1 runs already in the store"


@pytest.mark.parametrize("train", [MLP, VIT], ids=["mlp", "vit"])
def test_timing_a_step_changes_nothing_the_caller_trains(train):
    torch.set_num_threads(2)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    step, image = time_step(TrainConfig(**train))
    assert torch.equal(torch.rand(3), expected)  # the global generator where it stood
    assert torch.get_num_threads() == 2  # the run's 1 thread was for the timing only
    assert 0 < image < step


def plan_line(study, tiny_dir, tmp_path, **options):
    lines = []
    run_study(study, tiny_dir, tmp_path / "o", verify=False, val_size=100, log=lines.append, plan_only=True,
              **options)  # fmt: skip
    return lines[0]


@pytest.mark.parametrize("name", ["transformer", "schedules"])
def test_a_study_with_a_budget_prints_whether_its_estimate_fits(name, tiny_dir, tmp_path, timed, monkeypatch):
    line = plan_line(STUDIES[name], tiny_dir, tmp_path)
    assert line.endswith("; its budget at its defaults: 30 min on 2 cores, which this estimate fits")
    monkeypatch.setattr(plan_module, "time_step", lambda cfg: (60.0, 1.0))  # a minute a step: hours
    assert plan_line(STUDIES[name], tiny_dir, tmp_path).endswith("which this estimate is over it")
    for other in ({"quick": True}, {"seeds": 2}, {"epochs": 3}):  # not its defaults: its budget says nothing
        assert "budget" not in plan_line(STUDIES[name], tiny_dir, tmp_path, **other)


def test_the_budget_counts_the_runs_a_widened_grid_may_add(tiny_dir, tmp_path, monkeypatch):
    budgeted = dataclasses.replace(STUDIES["transformer"], budget_minutes=1)
    # per run a little under the budget's share of the planned runs, so the planned fit and the widened do not
    per_run = 60 / 80 * 0.9
    monkeypatch.setattr(engine, "estimate_seconds", lambda todo, *a: (per_run * len(list(todo)), "fixed"))
    line = plan_line(budgeted, tiny_dir, tmp_path)
    assert "80 runs" in line and "up to 40 more tuning runs" in line and line.endswith("is over it")


def test_a_study_run_at_its_defaults_prints_its_budget_first(tiny_dir, tmp_path, timed):
    budgeted = dataclasses.replace(STUDIES["headline"], budget_minutes=30, seeds=1)
    lines = []
    run_study(budgeted, tiny_dir, tmp_path / "o", verify=False, val_size=100, log=lines.append,
              protocol=Protocol("lecture"))  # fmt: skip
    assert lines[0].startswith("headline: 2 runs") and lines[0].endswith("which this estimate fits")
    assert lines[1].startswith("headline (runs): 2 configurations x 1 seeds = 2 runs")
    lines.clear()
    run_study(STUDIES["headline"], tiny_dir, tmp_path / "o2", verify=False, val_size=100, log=lines.append,
              protocol=Protocol("lecture"), seeds=1, quick=True)  # fmt: skip
    assert lines[0].startswith("headline (runs)")  # no budget declared: the stage's plan comes first
