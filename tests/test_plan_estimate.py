"""A study's time estimate: each kind of run's step timed on this machine, the runs' steps and evaluated
images at those rates, scaled by the store's runs; and a study's declared budget printed beside it."""

import dataclasses

import pytest
import torch

from droplab.studies import STUDIES, engine, run_study
from droplab.studies import plan as plan_module
from droplab.studies.backends import Local
from droplab.studies.plan import EPOCH_SECONDS, estimate_seconds, run_steps
from droplab.studies.protocol import Protocol
from droplab.threads import usable_cores
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


def test_a_stored_records_lists_are_the_same_kind_and_what_changes_a_steps_cost_is_another(timed):
    stored = {"job": {"train": {**MLP, "hidden": [16], "dropout": [0.5]}}, "summary": {"seconds": 1.0}}  # JSON
    estimate_seconds([{"train": MLP}], [stored], *SIZES)
    assert len(timed) == 1
    timed.clear()
    others = [{**MLP, "schedule": "onecycle"}, {**MLP, "weight_decay": 1e-4}, {**MLP, "batch_size": 50}]
    estimate_seconds([{"train": t} for t in others], [], *SIZES)
    assert len(timed) == 3


def test_a_d2l_run_trains_on_the_validation_images_and_validates_on_the_test_set():
    d2l = {**MLP, "split": "d2l"}
    assert run_steps(d2l, *SIZES) == (3 * 12, 3 * (1_200 + 300) + 300)


def test_the_store_scales_the_estimate(timed):
    alone, _ = estimate_seconds([{"train": MLP}], [], *SIZES)
    slower = {"job": {"train": MLP}, "summary": {"seconds": 3 * alone}}
    diverged = {"job": {"train": MLP}, "diverged": {"what": "loss = nan"}}  # stopped early: times nothing
    scaled, basis = estimate_seconds([{"train": MLP}], [slower, diverged], *SIZES)
    assert scaled == pytest.approx(3 * alone) and basis == "from the 1 runs already in the store"


ONE_CYCLE = {**MLP, "schedule": "onecycle", "epochs": 1}  # a schedule built for as few steps as a run has


@pytest.mark.parametrize("train", [MLP, VIT, ONE_CYCLE], ids=["mlp", "vit", "one-cycle, 1 epoch"])
def test_timing_a_step_changes_nothing_the_caller_trains(train):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(7)
        expected = torch.rand(3)
        torch.manual_seed(7)
        step, image = time_step(TrainConfig(**train))
        assert torch.equal(torch.rand(3), expected)  # the global generator where it stood
        assert torch.get_num_threads() == 2  # the run's 1 thread was for the timing only
        assert 0 < image < step
    finally:
        torch.set_num_threads(threads)


def plan_line(study, tiny_dir, tmp_path, **options):
    lines = []
    run_study(study, tiny_dir, tmp_path / "o", verify=False, val_size=100, log=lines.append, plan_only=True,
              **options)  # fmt: skip
    return lines[0]


@pytest.mark.parametrize("name", ["transformer", "schedules"])
def test_a_study_with_a_budget_prints_whether_its_estimate_fits(name, tiny_dir, tmp_path, timed, monkeypatch):
    line = plan_line(STUDIES[name], tiny_dir, tmp_path)
    assert line.endswith(f"; its budget at its defaults: 30 min on 2 cores; this estimate, timed on this machine "
                         f"({usable_cores()} cores), fits it")
    monkeypatch.setattr(plan_module, "time_step", lambda cfg: (60.0, 1.0))  # a minute a step: hours
    assert plan_line(STUDIES[name], tiny_dir, tmp_path).endswith("), is over it")
    others = ({"quick": True}, {"seeds": 2}, {"epochs": 3}, {"backend": Local(threads=1)},
              *({"protocol": p} for p in (Protocol(tune_seeds=3), Protocol(widen=0), Protocol(lr_grid=(1e-3,)),
                                          Protocol("lecture"))))  # fmt: skip
    for other in others:  # not its defaults: its budget says nothing
        assert "its budget at its defaults" not in plan_line(STUDIES[name], tiny_dir, tmp_path, **other)


def test_the_budget_counts_the_runs_a_widened_grid_may_add(tiny_dir, tmp_path, monkeypatch):
    budgeted = dataclasses.replace(STUDIES["transformer"], budget_minutes=1)
    # per run a little under the budget's share of the planned runs, so the planned fit and the widened do not
    per_run = 60 / 80 * 0.9
    monkeypatch.setattr(engine, "estimate_seconds", lambda todo, *a: (per_run * len(list(todo)), "fixed"))
    line = plan_line(budgeted, tiny_dir, tmp_path)
    assert "80 runs" in line and "up to 40 more tuning runs" in line and line.endswith("is over it")


def test_a_study_run_at_its_defaults_prints_its_budget_first(tiny_dir, tmp_path, timed):
    budgeted = dataclasses.replace(STUDIES["headline"], budget_minutes=30, seeds=1, lr_grid=(0.05, 0.1), max_epochs=2)
    lines = []
    run_study(budgeted, tiny_dir, tmp_path / "o", verify=False, val_size=100, log=lines.append)
    assert lines[0].startswith("headline: 10 runs") and lines[0].endswith("), fits it")  # 2 x (2 rates x 2 + 1)
    assert lines[1].startswith("headline (tuning): 4 configurations x 2 seeds = 8 runs")
    lines.clear()
    run_study(budgeted, tiny_dir, tmp_path / "o2", verify=False, val_size=100, log=lines.append,
              protocol=Protocol("lecture"))  # fmt: skip
    assert lines[0].startswith("headline (runs)")  # not at its defaults: the stage's plan comes first
