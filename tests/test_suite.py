"""The suite of studies read as one: each distinct claim once, primary claims corrected across the suite."""

from __future__ import annotations

import json
import math

import pytest

from droplab.stats import Estimate
from droplab.studies.suite import suite, suite_markdown, write_suite
from droplab.verdicts import Claim, Hypothesis, adjust


def _claim(text: str, mean: float, se: float, runs: tuple[str, ...], primary: bool = False) -> dict:
    h = Hypothesis(text, margin=0.3, primary=primary)
    return adjust([Claim(h, Estimate(mean, se, 1e9, 10), runs, f"test_acc: {text}", "regime",
                         per_seed=(mean,) * 10)])[0].record()  # fmt: skip


def test_a_claim_from_identical_runs_is_made_once_and_its_other_studies_named():
    same = _claim("dropout raises test accuracy", 1.0, 0.2, ("k1", "k2"), primary=True)
    again = {**_claim("dropout raises test accuracy (weight-decay's words)", 1.0, 0.2, ("k1", "k2")),
             "identity": same["identity"]}  # fmt: skip
    other = _claim("weight decay raises test accuracy", 0.5, 0.2, ("k3", "k2"))
    s = suite([{"study": "headline", "claims": [same]}, {"study": "weight-decay", "claims": [again, other]}])
    assert [c["study"] for c in s["claims"]] == ["headline", "weight-decay"]
    assert s["claims"][0]["also_in"] == ["weight-decay"] and s["repeated"] == 1
    assert sum(s["outcomes"].values()) == 2 and s["primaries"] == 1
    assert "also in weight-decay" in suite_markdown(s)


def test_the_primaries_are_corrected_across_the_suite_by_benjamini_hochberg():
    # three primaries (one per study), z = mean/se with infinite df: p = 2 (1 - Phi(z))
    # z = 3.0 -> p 0.0026998; z = 2.2 -> p 0.0278069; z = 1.9 -> p 0.0574331; each study's Holm over
    # its two tests doubles them (their equivalence tests, margin 0.3, have p 0.9965, 0.971, 0.945).
    # BH over the suite's six tests, sorted: 0.0054 x 6/1, 0.0556 x 6/2, 0.1149 x 6/3, then about 1
    # -> 0.0324, 0.1668, 0.2297 (monotone from the top)
    reports = [{"study": f"s{i}", "claims": [_claim(f"claim {i}", z, 1.0, (f"r{i}",), primary=True)]}
               for i, z in enumerate((3.0, 2.2, 1.9))]  # fmt: skip
    s = suite(reports)
    got = [c["p_adjusted"] for c in s["claims"]]
    assert got == pytest.approx([0.0026998 * 12, 0.0278069 * 6, 0.0574331 * 4], rel=1e-3)
    assert [c["outcome"] for c in s["claims"]] == ["supported", "inconclusive", "inconclusive"]
    assert all(c["family"] == 2 for c in s["claims"])  # the MDE keeps its study's family
    assert all(c["family_suite"] == 3 for c in s["claims"])


def test_a_secondary_claim_keeps_its_study_s_correction(tmp_path):
    primary = _claim("the primary", 3.0, 1.0, ("a",), primary=True)
    secondary = _claim("a secondary", 2.2, 1.0, ("b",))
    report = {"study": "x", "claims": [primary, secondary], "runs": 7, "runs_trained": 3}
    s = write_suite(tmp_path, [report, {"study": "y", "claims": [], "runs": 5, "runs_trained": 0}], 12.0)
    assert s["claims"][1]["p_adjusted"] == secondary["p_adjusted"]
    assert (tmp_path / "suite.json").exists()
    assert "Wall time of the call that wrote this file: 0.2 min; it trained 3 runs, and its studies read 12 " \
        "(the rest came from the store)." in (tmp_path / "suite.md").read_text()  # fmt: skip
    assert not math.isnan(s["claims"][0]["p_adjusted"])


# --- the command line: the protocol's options, the plan, the suite of `study all` --------------

from test_cli import run_cli  # noqa: E402


@pytest.mark.parametrize(
    "args, message",
    [
        (["--protocol", "best"], "invalid choice: 'best'"),
        (["--lr-grid", "0.1,fast"], "--lr-grid '0.1,fast': invalid, expected learning rates separated by commas"),
        (["--lr-grid", "0.1,-1"], "--lr-grid (0.1, -1.0): invalid, expected distinct learning rates > 0"),
        (["--lr-grid", "0.1,0.1"], "--lr-grid (0.1, 0.1): invalid, expected distinct learning rates > 0"),
        (["--widen", "-1"], "--widen -1: invalid, expected an integer from 0 to 10"),
        (["--tune-seeds", "0"], "--tune-seeds 0: invalid, expected an integer from 1 to 10000"),
    ],
)
def test_bad_protocol_options_exit_2_before_any_work(args, message, capsys, tmp_path):
    code, _, err = run_cli(["study", "headline", "--out", str(tmp_path / "o"), *args], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "o").exists()


def test_plan_prints_the_runs_and_trains_nothing(tiny_dir, tmp_path, capsys):
    args = ["study", "headline", "--data-dir", str(tiny_dir), "--no-verify", "--val-size", "100", "--seeds", "4",
            "--tune-seeds", "3", "--lr-grid", "0.05,0.1", "--out", str(tmp_path / "o"), "--plan"]  # fmt: skip
    code, out, _ = run_cli(args, capsys)
    # 2 variants x (2 rates x 3 tuning seeds + 4 confirmation seeds)
    assert code == 0 and "headline: 20 runs" in out and "nothing was trained" in out
    assert "up to 12 more tuning runs if the grid widens" in out  # 2 variants x 2 steps x 3 tuning seeds
    assert not (tmp_path / "o").exists()


# --- a study's hypotheses: declared before its runs, each measured once ------------------------

from droplab.studies import registry, run_study  # noqa: E402
from droplab.studies.engine import StudyError  # noqa: E402
from droplab.studies.results import UndeclaredHypothesis  # noqa: E402

H1 = Hypothesis("dropout raises test accuracy", primary=True)
H2 = Hypothesis("dropout raises it a lot")


def _tiny_study(analyze, hypotheses=(H1, H2)):
    variants = lambda quick: [registry.Variant("plain", {"dropout": (0.0, 0.0)}),  # noqa: E731
                              registry.Variant("dropout", {"dropout": (0.5, 0.5)})]
    return registry.Study("tiny", "", "", variants, analyze, hypotheses=tuple(hypotheses), lr_grid=(0.1,))


@pytest.mark.parametrize(
    "measured, error",
    [((H1,), StudyError), ((H1, H1, H2), StudyError), ((H1, H2, Hypothesis("undeclared")), UndeclaredHypothesis)],
)
def test_a_study_must_measure_each_declared_hypothesis_once(measured, error, tiny_dir, tmp_path):
    def analyze(r):
        return registry.Analysis([r.claim(h, "dropout", "plain") for h in measured], [], {})

    with pytest.raises(error):
        run_study(_tiny_study(analyze), tiny_dir, tmp_path / "o", seeds=2, quick=True, verify=False, val_size=100,
                  log=lambda line: None)  # fmt: skip


def test_a_study_declares_at_most_one_primary_and_each_hypothesis_once():
    with pytest.raises(ValueError, match="more than one primary"):
        _tiny_study(None, (H1, Hypothesis("another", primary=True)))
    with pytest.raises(ValueError, match="declared twice"):
        _tiny_study(None, (H1, H1))


def test_study_all_prints_each_distinct_claim_once_with_the_suite_s_verdicts(quick_study, tmp_path, capsys):
    """``droplab study all --quick``, its runs served by the store the quick runs of every study left."""
    from droplab.studies import STUDIES

    suite_names = [n for n, s in STUDIES.items() if s.in_all]
    reports = [quick_study(n) for n in suite_names]
    args = ["study", "all", "--quick", "--seeds", "3", "--data-dir", str(quick_study.data), "--no-verify",
            "--val-size", "100", "--store", str(quick_study.store), "--out", str(tmp_path / "all")]  # fmt: skip
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "best-recipe" not in out.split("the suite:")[1]
    s = json.loads((tmp_path / "all" / "suite.json").read_text())
    lines = [c["line"] for c in s["claims"]]
    assert len(set(c["identity"] for c in s["claims"])) == len(lines)  # distinct
    made = sum(len(r["claims"]) for r in reports)
    assert len(lines) + s["repeated"] == made and s["repeated"] >= 1  # dropout vs plain at 10,000 images, repeated
    for line in lines:
        assert out.count(line) == 1  # printed once (the studies' own claim lines are not printed in `all`)
    primaries = [c for c in s["claims"] if c["primary"]]
    assert len(primaries) == s["primaries"] == len(suite_names) and all(c["family_suite"] == len(primaries)
                                                                         for c in primaries)  # fmt: skip
    assert all(json.loads((tmp_path / "all" / n / "study.json").read_text())["runs_trained"] == 0 for n in suite_names)
