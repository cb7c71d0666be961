"""The fair protocol (tuning seeds, the rate chosen on validation, fresh confirmation seeds) and
the lecture's, checked from what a quick study stored."""

from __future__ import annotations

import json
import math

import pytest
from conftest import write_dataset

from droplab.studies import STUDIES, engine, registry, run_study
from droplab.studies.catalog.common import BASE, dropout, fixed, plain
from droplab.studies.jobs import config_key
from droplab.studies.protocol import TUNE_SEED_BASE, Protocol, ProtocolError, choose_lr, pick_groups

QUICK = {"seeds": 2, "quick": True, "verify": False, "val_size": 100, "log": lambda line: None}


@pytest.fixture(scope="module")
def fair(tmp_path_factory) -> tuple[dict, list[dict]]:
    """A quick headline study under the fair protocol: its study.json and every record in its store."""
    root = tmp_path_factory.mktemp("protocol")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DROPLAB_DATA", raising=False)
        mp.setenv("XDG_CACHE_HOME", str(root / "xdg-cache"))
        run_study(STUDIES["headline"], write_dataset(root / "tiny"), root / "h", **QUICK)
    stored = [json.loads(p.read_text()) for p in sorted((root / "h" / "runs").glob("*.json"))]
    return json.loads((root / "h" / "study.json").read_text()), stored


def _without(train: dict, *keys: str) -> dict:
    return {k: v for k, v in train.items() if k not in keys}


def test_confirmation_seeds_are_disjoint_from_tuning_seeds(fair):
    study, stored = fair
    confirmed = {r["key"] for v in study["variants"].values() for r in v["per_seed"]}
    tuning = [r for r in stored if config_key(r["job"]) not in confirmed]
    confirmation = [r for r in stored if config_key(r["job"]) in confirmed]
    assert len(confirmation) == len(confirmed) == 2 * len(study["variants"])
    assert len(tuning) == len(study["variants"]) * 2 * len(study["tuning_seeds"])  # quick: the grid's two ends
    tune_seeds = {r["job"]["train"]["seed"] for r in tuning}
    confirm_seeds = {r["job"]["train"]["seed"] for r in confirmation}
    assert tune_seeds == set(study["tuning_seeds"]) == {TUNE_SEED_BASE}
    assert confirm_seeds == set(study["seeds"]) == {0, 1} and not tune_seeds & confirm_seeds
    assert all(r["job"]["train"]["select"] == "best_val" for r in stored)  # both stages keep the val-best epoch


def test_the_rate_chosen_has_the_best_mean_tuning_validation_accuracy(fair):
    study, stored = fair
    for name, variant in study["variants"].items():
        config = variant["config"]["train"]
        same = [r for r in stored if _without(r["job"]["train"], "seed", "lr") == _without(config, "seed", "lr")
                and r["job"]["train"]["seed"] in study["tuning_seeds"]]  # fmt: skip
        by_lr: dict[float, list[float]] = {}
        for r in same:
            by_lr.setdefault(r["job"]["train"]["lr"], []).append(r["summary"]["val_acc"])
        assert sorted(by_lr) == [0.03, 0.3]  # the quick grid: the ends of (0.03, 0.1, 0.3)
        best = max(sum(v) / len(v) for v in by_lr.values())
        expected = min(lr for lr, v in by_lr.items() if sum(v) / len(v) == best)
        assert study["lr_chosen"][name] == expected == config["lr"], (name, by_lr)
    tuning = study["tables"][0]
    assert tuning["title"].startswith("tuning: mean best validation accuracy") and len(tuning["rows"]) == 2


def test_claims_read_the_confirmation_runs_at_their_validation_chosen_epoch(fair):
    study, _ = fair
    for variant in study["variants"].values():
        for run in variant["per_seed"]:
            best = max(run["history"], key=lambda h: h["val_acc"])  # the first of the best on a tie
            assert run["summary"]["best_epoch"] == best["epoch"] and run["summary"]["val_acc"] == best["val_acc"]
    assert "lr tuned over {0.03, 0.3}" in study["regime"] and "best epoch on val" in study["regime"]


def test_choose_lr_on_hand_made_scores():
    scores = {
        "plain": {0.03: [0.80, 0.82], 0.1: [0.85, 0.87], 0.3: [0.86, 0.84]},  # 0.86 > 0.85
        "tie": {0.03: [0.9, 0.8], 0.1: [0.85, 0.85], 0.3: [0.8, 0.9]},  # all 0.85: the smallest rate
        "late": {0.1: [0.5], 0.3: [0.9]},
    }
    assert choose_lr(scores) == {"plain": 0.1, "tie": 0.03, "late": 0.3}


def test_a_diverged_tuning_run_rules_its_rate_out():
    # 0.3 would win on its surviving seed, but one of its runs diverged
    assert choose_lr({"dropout": {0.03: [0.7, 0.7], 0.1: [0.8, 0.8], 0.3: [0.95, None]}}) == {"dropout": 0.1}
    with pytest.raises(ProtocolError, match="one at which no tuning run diverged"):
        choose_lr({"dropout": {0.1: [None, 0.8], 0.3: [0.9, None]}})


def test_pick_groups_confirms_each_groups_best_in_the_place_of_its_first_member():
    vs = [registry.Variant("plain"), registry.Variant("g 0.2", group="gaussian"),
          registry.Variant("dropout 0.5"), registry.Variant("g 0.5", group="gaussian"),
          registry.Variant("g 1.0", group="gaussian")]  # fmt: skip
    scores = {"plain": {0.1: [0.8]}, "dropout 0.5": {0.1: [0.85]},
              "g 0.2": {0.1: [0.84, 0.86], 0.3: [0.9, 0.1]},  # at its chosen 0.1: 0.85
              "g 0.5": {0.1: [0.87, 0.87]},  # 0.87: the best
              "g 1.0": {0.1: [0.86, 0.86]}}  # fmt: skip
    chosen = choose_lr(scores)
    out, picked = pick_groups(vs, scores, chosen)
    assert [v.name for v in out] == ["plain", "gaussian", "dropout 0.5"] and picked == {"gaussian": "g 0.5"}
    assert out[1].group is None
    # without scores (the lecture's protocol): each group's first member
    assert pick_groups(vs, {}, {})[1] == {"gaussian": "g 0.2"}


def test_the_lecture_protocol_tunes_nothing_and_scores_the_last_epoch(tiny_dir, tmp_path):
    report = run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", protocol=Protocol("lecture"), **QUICK)
    assert report["protocol"] == "lecture" and report["tuning_seeds"] == [] and report["lr_chosen"] == {}
    assert report["runs"] == report["runs_trained"] == 2 * len(report["variants"])  # no tuning runs
    assert len(list((tmp_path / "h" / "runs").glob("*.json"))) == report["runs"]
    for variant in report["variants"].values():
        train = variant["config"]["train"]
        assert train["lr"] == STUDIES["headline"].base.get("lr", 0.1) and train.get("select", "last") == "last"
        for run in variant["per_seed"]:
            assert run["summary"]["best_epoch"] == train["epochs"] == run["history"][-1]["epoch"]
            assert run["summary"]["val_acc"] == run["history"][-1]["val_acc"]  # the last epoch's, not the best's
    regime = "lecture budget: lr 0.1, 2 epochs, last epoch, 2 seeds"
    assert all(c["regime"].startswith(regime) for c in report["claims"])


def test_a_study_that_fixes_the_lecture_protocol_ignores_the_fair_one(tiny_dir, tmp_path):
    said = []

    def analyze(r):
        return registry.Analysis([], [], {})

    replay = registry.Study("replay-test", "A replay", "Does it tune?", fixed(plain(), dropout()), analyze,
                            base=BASE, protocol="lecture")  # fmt: skip
    report = run_study(replay, tiny_dir, tmp_path / "r", **{**QUICK, "log": said.append})
    assert report["protocol"] == "lecture" and report["tuning_seeds"] == [] and report["lr_chosen"] == {}
    assert report["runs"] == 4 and any("runs under the lecture protocol only" in line for line in said)
    assert all(v["config"]["train"].get("select", "last") == "last" for v in report["variants"].values())


def test_protocol_arguments_are_checked():
    for kw, field in (({"name": "tuned"}, "protocol"), ({"tune_seeds": 0}, "tune_seeds"),
                      ({"lr_grid": (0.1, 0.1)}, "lr_grid"), ({"lr_grid": ()}, "lr_grid"),
                      ({"widen": -1}, "widen"), ({"widen": True}, "widen")):  # fmt: skip
        with pytest.raises(ProtocolError) as err:
            Protocol(**kw)
        assert err.value.field == field and "--" not in str(err.value)
    assert Protocol(tune_seeds=3).tuning_seeds() == [TUNE_SEED_BASE + k for k in range(3)]
    assert Protocol().grid(STUDIES["headline"], quick=True) == (0.03, 0.3)
    assert Protocol(lr_grid=(0.05,)).grid(STUDIES["headline"]) == (0.05,)



class _Tuning:
    """A stand-in for the engine's stage: each tuning run's best validation accuracy falls with the
    distance, in log rate, from its variant's ``peak``; runs above ``diverge_above`` diverge."""

    def __init__(self, widen: int = 2, quick: bool = False, diverge_above: float = 1e9) -> None:
        self.protocol, self.quick, self.diverge_above, self.asked = Protocol(widen=widen), quick, diverge_above, []

    def run(self, what, variants, seeds):
        self.asked.append(sorted(v.overrides["lr"] for v in variants))
        out = {}
        for v in variants:
            lr, peak = v.overrides["lr"], v.overrides["peak"]
            for s in seeds:
                acc = 0.9 - abs(math.log(lr / peak)) / 100 + s * 1e-6
                out[v.name, s] = {"diverged": {"what": "loss nan"}} if lr > self.diverge_above else \
                    {"summary": {"val_acc": acc}}  # fmt: skip
        return out


def _tune(stage, **peaks):
    variants = [registry.Variant(name, {"peak": peak}) for name, peak in peaks.items()]
    return engine._tune(stage, variants, (0.03, 0.1, 0.3), [10000, 10001])


def test_the_grid_widens_past_a_winning_end_until_the_best_rate_is_inside():
    stage = _Tuning()
    scores, chosen = _tune(stage, inside=0.1, high=0.8, low=0.012, far=50.0)
    assert chosen == {"inside": 0.1, "high": 1.0, "low": 0.01, "far": 3.0}
    assert sorted(scores["inside"]) == [0.03, 0.1, 0.3]  # an inner best: the grid only
    assert sorted(scores["high"]) == [0.03, 0.1, 0.3, 1.0, 3.0]  # 1 won at the end, 3 lost: stop
    assert sorted(scores["low"]) == [0.003, 0.01, 0.03, 0.1, 0.3]  # the 1-3-10 series, downwards
    assert sorted(scores["far"]) == [0.03, 0.1, 0.3, 1.0, 3.0]  # two steps at most
    assert stage.asked == [[0.03] * 4 + [0.1] * 4 + [0.3] * 4, [0.01, 1.0, 1.0], [0.003, 3.0, 3.0]]
    notes = engine._grid_edges(chosen, scores, (0.03, 0.1, 0.3))
    widened = "the grid's end won its tuning, so it was widened past it to"
    assert notes == [f"high: {widened} 1, 3; chosen: 1", f"low: {widened} 0.003, 0.01; chosen: 0.01",
                     f"far: {widened} 1, 3; chosen: 3",
                     "far: its chosen learning rate, 3, is the largest tried; none beyond it was tried"]  # fmt: skip


def test_a_diverged_rate_past_the_end_stops_the_widening():
    scores, chosen = _tune(_Tuning(diverge_above=0.5), high=5.0)
    assert chosen == {"high": 0.3} and sorted(scores["high"]) == [0.03, 0.1, 0.3, 1.0]
    assert scores["high"][1.0] == [None, None]
    assert engine._grid_edges(chosen, scores, (0.03, 0.1, 0.3)) == [
        "high: the grid's end won its tuning, so it was widened past it to 1; chosen: 0.3"]


def test_a_rate_past_the_end_that_only_ties_it_is_not_chosen_and_stops_the_widening():
    class Flat(_Tuning):  # every rate scores alike: the grid's smallest wins the tie, and 0.01 only ties it
        def run(self, what, variants, seeds):
            out = super().run(what, variants, seeds)
            return {key: {"summary": {"val_acc": 0.85}} for key in out}

    stage = Flat()
    scores, chosen = _tune(stage, flat=1.0)
    assert chosen == {"flat": 0.03} and sorted(scores["flat"]) == [0.01, 0.03, 0.1, 0.3] and len(stage.asked) == 2


def test_beyond_steps_strictly_outwards_within_bounds():
    from droplab.studies.protocol import beyond

    assert beyond(0.1, [0.1, 0.2, 0.4], [0.1, 0.2, 0.4]) == 0.05  # off the series, downwards: the grid's ratio
    assert beyond(0.4, [0.1, 0.2, 0.4], [0.1, 0.2, 0.4]) == 0.8
    assert beyond(30.0, [1.0, 3.0, 10.0, 30.0], [1.0, 3.0, 10.0]) == 100.0  # the largest accepted
    assert beyond(100.0, [10.0, 30.0, 100.0], [10.0, 30.0, 100.0]) is None  # 300 would leave (1e-6, 100]
    assert beyond(3e-6, [3e-6, 1e-5], [3e-6, 1e-5]) is None  # 1e-6 would leave it too
    assert beyond(0.1015, [0.101, 0.1015], [0.101, 0.1015]) is None  # rounds to 0.1: not past the end
    assert beyond(0.5, [0.5], [0.5]) is None  # one rate: nothing to widen


def test_no_widening_when_asked_none_or_in_the_quick_setting():
    for stage in (_Tuning(widen=0), _Tuning(quick=True)):
        scores, chosen = _tune(stage, high=5.0)
        assert chosen == {"high": 0.3} and sorted(scores["high"]) == [0.03, 0.1, 0.3] and len(stage.asked) == 1


class _Best:
    """A stand-in for Results: each variant's validation-best epoch on each seed, of ``epochs``."""

    def __init__(self, epochs: int, select: str = "best_val", **best: list[int]) -> None:
        self.variants = [registry.Variant(name) for name in best]
        self.seeds, self.best, self.epochs, self.select = list(range(len(next(iter(best.values()))))), best, epochs, \
            select  # fmt: skip

    def get(self, name, seed):
        return {"job": {"train": {"epochs": self.epochs, "select": self.select}}}

    def values(self, name, key):
        return self.best[name]


def test_a_note_when_most_seeds_were_best_in_the_last_tenth_of_their_epochs():
    notes = engine._late_best(_Best(20, early=[12, 19, 20, 8], late=[19, 20, 18, 20], half=[19, 20, 3, 4]))
    assert notes == ["'late': its best epoch on validation was in the last 2 of 20 epochs in 3 of 4 seeds: "
                     "it may still have been improving"]  # fmt: skip
    assert engine._late_best(_Best(10, late=[10, 10, 9])) == [
        "'late': its best epoch on validation was in the last epoch in 2 of 3 seeds: it may still have been improving"]
    assert engine._late_best(_Best(20, "last", late=[20, 20])) == []  # the last epoch kept: no choice to read
    assert engine._late_best(_Best(5, late=[5, 5, 4])) == [  # under 10 epochs, still the last one
        "'late': its best epoch on validation was in the last epoch in 2 of 3 seeds: it may still have been improving"]


def test_a_study_with_a_diverged_tuning_run_in_its_store_resumes(tiny_dir, tmp_path, monkeypatch):
    from droplab.studies import jobs
    from droplab.train import Diverged

    real_fit = jobs.fit

    def fit(config, *args, **kwargs):  # the grid's largest rate blows up, as lr 1 did in the noise study
        if config.lr == 0.3:
            raise Diverged(1, 3, "loss = nan", config.lr)
        return real_fit(config, *args, **kwargs)

    monkeypatch.setattr(jobs, "fit", fit)
    first = run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", **QUICK)
    stored = [json.loads(p.read_text()) for p in (tmp_path / "h" / "runs").glob("*.json")]
    assert sum("diverged" in r for r in stored) == 2 and set(first["lr_chosen"].values()) == {0.03}
    said = []
    again = run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", **{**QUICK, "log": said.append})
    assert again["runs_trained"] == 0 and again["claims"] == first["claims"]
    assert any("from the 4 runs already in the store" in line for line in said)  # the diverged ones time nothing
