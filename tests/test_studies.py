"""The study engine, the catalog, the report and their commands, on small generated data."""

import html
import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest
from test_cli import run_cli

from droplab.report import OUTCOME_COLORS, NoStudyFound, ReportError, find_studies, render
from droplab.rundir import DirectoryBusy, DirectoryNotEmpty, DirectoryOwned
from droplab.stats import OUTCOMES, Estimate
from droplab.studies import PROBES, STUDIES, StudyArgumentError, catalog, registry, run_study
from droplab.studies.jobs import config_key, job_config
from droplab.studies.protocol import Protocol
from droplab.verdicts import Claim, Hypothesis

QUICK = {"seeds": 2, "quick": True, "verify": False, "val_size": 100, "log": lambda line: None}
P = r"(n/a|< 0\.001|\d\.\d{3})"
LINE = re.compile(r"^claim: .+ — [+-]\d+\.\d+( pp)? \[(n/a|[+-]\d+\.\d+, [+-]\d+\.\d+)\] "
                  r"\((δ ±|≈ within ±|no worse than [−+])[\d.e+-]+( pp)?; p " + P + ", adjusted " + P
                  + r"; MDE (n/a|\d+\.\d+)(; underpowered: (about \d+ seeds would resolve ±δ|no number of seeds "
                    r"would resolve ±δ \(the test images alone hold the MDE above \d+\.\d+\)|more than 1,000 seeds "
                    r"would be needed to resolve ±δ))?\)"
                  r" — (supported|contradicted|equivalent|inconclusive) \(.+\)$")  # fmt: skip
HEADLINE_RUNS = 2 * (2 * 1 + 2)  # two variants, each tuned at the quick grid's two rates on one seed, then two seeds


def test_config_key_is_stable_and_sees_every_field():
    study = STUDIES["headline"]
    v = study.variants(False)[1]
    a, b = job_config(study, v, 0, None, False, 55_000), job_config(study, v, 0, None, False, 55_000)
    assert config_key(a) == config_key(b) and re.fullmatch(r"[0-9a-f]{16}", config_key(a))
    assert config_key(job_config(study, v, 1, None, False, 55_000)) != config_key(a)
    for field, value in (("lr", 0.05), ("dropout", (0.5, 0.4)), ("epochs", 11), ("threads", 1), ("val_size", 4000)):
        changed = json.loads(json.dumps(a))
        changed["train"][field] = value
        assert config_key(changed) != config_key(a), field
    assert config_key({**a, "probes": ["mc"]}) != config_key(a)


@pytest.mark.parametrize("name", list(STUDIES))
def test_every_study_runs_quick_and_writes_its_files(name, tiny_dir, tmp_path):
    report = run_study(STUDIES[name], tiny_dir, tmp_path / name, **QUICK)
    out = tmp_path / name
    stored = json.loads((out / "study.json").read_text())
    assert stored["study"] == name and stored["claims"] and stored["quick"] is True
    assert sum(c["primary"] for c in stored["claims"]) == 1, "one primary claim per study"
    for claim in stored["claims"]:
        assert LINE.match(claim["line"]), claim["line"]
        assert claim["outcome"] in OUTCOMES and claim["line"].endswith(f" — {claim['outcome']} ({claim['regime']})")
    for figure in stored["figures"]:
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.md").read_text()
    assert stored["title"] in summary and all(c["line"] in summary for c in stored["claims"])
    for variant in stored["variants"].values():
        assert [r["seed"] for r in variant["per_seed"]] == [0, 1]
    study = STUDIES[name]
    tuned = len(study.variants(True)) * len(Protocol().grid(study, True)) * len(stored["tuning_seeds"])
    assert report["runs"] == len(stored["variants"]) * 2 + tuned or name in ("layer-rates", "data-size")


def test_a_finished_study_resumes_without_training_and_gives_the_same_results(tiny_dir, tmp_path):
    first = run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", **QUICK)
    assert first["runs_trained"] == HEADLINE_RUNS
    again = run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", **QUICK)
    assert again["runs_trained"] == 0
    assert again["claims"] == first["claims"] and again["variants"] == first["variants"]


def test_an_interrupted_study_trains_only_what_is_missing(tiny_dir, tmp_path):
    first = run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", **QUICK)
    results = sorted((tmp_path / "h" / "runs").glob("*.json"))
    assert len(results) == HEADLINE_RUNS
    results[0].unlink()  # never written: the run was killed before its atomic rename
    results[1].write_text(results[1].read_text()[:100])  # damaged: not trusted, trained again
    again = run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", **QUICK)
    assert again["runs_trained"] == 2
    assert _numbers(again) == _numbers(first)  # bit for bit: same seed, same threads


def test_a_second_study_into_the_same_directory_is_refused_while_the_first_runs(tiny_dir, tmp_path):
    import fcntl
    import os

    run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", **QUICK)
    fd = os.open(tmp_path / "h" / ".droplab-study", os.O_RDONLY)  # as a running study holds it
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(DirectoryBusy, match="is in use by another droplab process"):
            run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", **QUICK)
    finally:
        os.close(fd)
    assert run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", **QUICK)["runs_trained"] == 0


def test_an_interrupted_job_goes_on_from_its_checkpoint_bit_for_bit(tiny_dir, tmp_path):
    import signal

    from droplab.data import load_fashion_mnist
    from droplab.interrupt import StopRequest, StudyInterrupted
    from droplab.studies.jobs import run_job

    data = load_fashion_mnist(tiny_dir, val_size=100, verify=False)
    study = STUDIES["long-training"]
    job = job_config(study, study.variants(True)[1], 0, 3, True, len(data.train_x))
    whole = run_job(job, data)
    stop, path = StopRequest(), tmp_path / "job.pt"
    stop.signum = signal.SIGTERM  # as if the signal came during the first step
    with pytest.raises(StudyInterrupted, match="interrupted by SIGTERM at epoch 1, step 1"):
        run_job(job, data, path, stop)
    resumed = run_job(job, data, path)
    assert resumed["history"] == whole["history"]
    assert {k: v for k, v in resumed["summary"].items() if k != "seconds"} == {
        k: v for k, v in whole["summary"].items() if k != "seconds"
    }
    path.write_bytes(b"damaged")  # a damaged job checkpoint: the job starts over, same result
    assert run_job(job, data, path)["history"] == whole["history"]


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_study_stopped_by_a_signal_resumes_with_the_same_command(sig, code, tiny_dir, tmp_path):
    """SIGINT or SIGTERM: the job under way checkpoints. The same command then finishes the
    study, with the numbers of a study never interrupted."""
    import signal
    import sys
    import time

    out = tmp_path / "h"
    cmd = [sys.executable, "-m", "droplab", "study", "long-training", "--quick", "--seeds", "2", "--epochs", "12",
           "--data-dir", str(tiny_dir), "--no-verify", "--val-size", "100",
           "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((out / "runs").glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"interrupted by {sig}" in err and "the same command resumes" in err and "Traceback" not in err
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    whole = subprocess.run([*cmd[:-1], str(tmp_path / "whole")], capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr  # never interrupted; same threads as the resumed one
    resumed = json.loads((out / "study.json").read_text())
    assert _numbers(resumed) == _numbers(json.loads((tmp_path / "whole" / "study.json").read_text()))
    assert list((out / "runs" / "partial").iterdir()) == []  # no job checkpoints left behind


def _numbers(report: dict) -> dict:
    """Every measured number of a study's report except the seconds a run took."""
    return {
        (name, r["seed"]): (r["key"], r["history"], {k: x for k, x in r["summary"].items() if k != "seconds"})
        for name, v in report["variants"].items()
        for r in v["per_seed"]
    }


def test_a_result_stored_for_another_config_is_not_used(tiny_dir, tmp_path):
    run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", **QUICK)
    path = sorted((tmp_path / "h" / "runs").glob("*.json"))[0]
    stored = json.loads(path.read_text())
    stored["job"]["train"]["lr"] = 0.7  # a file under this key that is not this job's (0.7: in no grid)
    path.write_text(json.dumps(stored))
    assert run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", **QUICK)["runs_trained"] == 1


def test_studies_sharing_a_store_share_identical_runs(tiny_dir, tmp_path):
    from droplab.studies.catalog.common import dropout, fixed, plain

    headline = STUDIES["headline"]
    variants = fixed(plain(), dropout(), registry.Variant("dropout 0.2", {"dropout": (0.2, 0.2)}))
    more = registry.Study("more", "", "", variants, lambda r: registry.Analysis([], [], {}), base=headline.base,
                          max_epochs=headline.max_epochs)  # fmt: skip
    run_study(headline, tiny_dir, tmp_path / "headline", store=tmp_path / "runs", **QUICK)
    again = run_study(more, tiny_dir, tmp_path / "more", store=tmp_path / "runs", **QUICK)
    assert again["runs"] == 3 * 4 and again["runs_trained"] == 4  # plain and dropout 0.5 were already there


def test_output_directory_of_another_study_or_not_a_study_is_refused(tiny_dir, tmp_path):
    run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", **QUICK)
    with pytest.raises(DirectoryOwned, match="holds results of study 'headline', not 'noise'"):
        run_study(STUDIES["noise"], tiny_dir, tmp_path / "h", **QUICK)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DirectoryNotEmpty, match="already holds results; droplab never overwrites a study"):
        run_study(STUDIES["headline"], tiny_dir, tmp_path / "other", **QUICK)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "kw, message",
    [({"seeds": 0}, "seeds = 0 is invalid"), ({"epochs": 0}, "epochs = 0 is invalid"),
     ({"seeds": True}, "seeds = True is invalid")],
)
def test_bad_study_options(kw, message, tiny_dir, tmp_path):
    with pytest.raises(StudyArgumentError, match=message) as err:
        run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", **{**QUICK, **kw})
    (name, value), = kw.items()
    assert (err.value.name, err.value.value, err.value.expected) == (name, value, "an integer >= 1")
    assert "--" not in str(err.value)
    assert not (tmp_path / "h").exists()


def test_claim_lines_and_outcomes():
    up, gap = Hypothesis("x", margin=0.3), Hypothesis("y", margin=0.01, expect_positive=False, unit="")
    c = Claim(up, Estimate(1.2, 0.2, 4.0, 5), regime="lecture budget")
    assert c.line() == ("claim: x — +1.20 pp [+0.64, +1.76] (δ ±0.3 pp; p 0.004, adjusted 0.004; MDE 0.75; "
                        "underpowered: about 21 seeds would resolve ±δ) — supported (lecture budget)")  # fmt: skip
    assert LINE.match(c.line())
    assert Claim(up, Estimate(-1.2, 0.2, 4.0, 5)).outcome == "contradicted"
    assert Claim(gap, Estimate(-0.05, 0.005, 4.0, 5)).outcome == "supported"
    assert Claim(up, Estimate(0.1, 0.3, 1.0, 2)).outcome == "inconclusive"
    assert Claim(up, Estimate(0.01, 0.02, 30.0, 31)).outcome == "equivalent"
    one = Claim(up, Estimate(0.3, math.nan, math.nan, 1), regime="r")
    assert one.line().endswith("[n/a] (δ ±0.3 pp; p n/a, adjusted n/a; MDE n/a) — inconclusive (r)")
    assert LINE.match(one.line())
    equiv = Claim(Hypothesis("z", kind="equivalence"), Estimate(0.02, 0.05, 30.0, 31), regime="r")
    assert " (≈ within ±0.3 pp; " in equiv.line() and equiv.outcome == "equivalent" and LINE.match(equiv.line())


# --- report ------------------------------------------------------------------------------


def test_report_is_one_self_contained_page(tiny_dir, tmp_path):
    for name in ("headline", "ensemble"):
        run_study(STUDIES[name], tiny_dir, tmp_path / "s" / name, **QUICK)
    page = render(find_studies([tmp_path / "s"]))
    for name in ("headline", "ensemble"):
        stored = json.loads((tmp_path / "s" / name / "study.json").read_text())
        assert html.escape(stored["title"]) in page
        for claim in stored["claims"]:  # its line, its own outcome in its own colour
            head = html.escape(claim["line"].rpartition(f" — {claim['outcome']}")[0], quote=True)
            color = OUTCOME_COLORS[claim["outcome"]]
            assert (f"<li style='border-color:{color}'>" in page and head in page
                    and f"{head} — <span class='verdict' style='color:{color}'>{claim['outcome']}</span>" in page)
        assert page.count("data:image/png;base64,") >= 1
    assert page.count("<img ") == page.count("src='data:image/png;base64,")
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page) and "<link" not in page and "<script" not in page


def test_report_errors(tmp_path):
    with pytest.raises(ReportError, match="not a directory"):
        find_studies([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoStudyFound, match="no study.json") as err:
        find_studies([tmp_path / "empty"])
    assert err.value.path == tmp_path / "empty" and isinstance(err.value, ReportError)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "study.json").write_text("{not json")
    with pytest.raises(ReportError, match="cannot be read"):
        render([tmp_path / "bad"])


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium for a headless screenshot")
def test_report_renders_in_headless_chromium_without_network(tiny_dir, tmp_path):
    run_study(STUDIES["headline"], tiny_dir, tmp_path / "h", **QUICK)
    html = tmp_path / "report.html"
    html.write_text(render([tmp_path / "h"]))
    shot = tmp_path / "shot.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
         f"--screenshot={shot}", "--window-size=1200,1600", html.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


# --- commands ------------------------------------------------------------------------------


def test_study_and_report_commands(tiny_dir, tmp_path, capsys):
    args = ["--quick", "--seeds", "2", "--data-dir", str(tiny_dir), "--no-verify", "--val-size", "100"]
    code, out, err = run_cli(["study", "headline", "--out", str(tmp_path / "h"), *args], capsys)
    assert code == 0, err
    stored = json.loads((tmp_path / "h" / "study.json").read_text())
    assert [line for line in out.splitlines() if LINE.match(line)] == [c["line"] for c in stored["claims"]]
    code, out, err = run_cli(["report", str(tmp_path / "h"), "-o", str(tmp_path / "r.html")], capsys)
    assert code == 0 and (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    code, out, _ = run_cli(["study", "list"], capsys)
    assert code == 0 and all(name in out for name in STUDIES)


@pytest.mark.parametrize(
    "args, message",
    [
        (["study", "grid-search"], "study 'grid-search': unknown, expected one of all, list, headline"),
        (["study", "headline", "--seeds", "0"], "--seeds 0: invalid, expected an integer >= 1"),
        (["study", "headline", "--cpus-per-run", "0"], "--cpus-per-run 0: invalid, expected an integer >= 1"),
        (["study", "headline", "--jobs", "2"], "--jobs 2: retired with its pool of worker processes, which trained"),
        (["study", "headline", "--jobs", "x"], "--jobs x: retired with its pool of worker processes"),
        (["study", "headline", "--address", "auto"], "--address goes with --backend ray only"),
        (["compare", "--threads", "1", "--cpus-per-run", "2"], "--cpus-per-run 2 and --threads 1: both set each run's "
                                                               "threads; give one of them"),
        (["study", "headline", "--backend", "ray", "--address", "nowhere"], "--address nowhere: invalid, expected "
                                                                            "auto, or HOST:PORT"),
        (["study", "headline", "--backend", "ray", "--cpus-per-run", "0"], "--cpus-per-run 0: invalid, expected an "
                                                                           "integer >= 1"),
        (["study", "headline", "--epochs", "-3"], "--epochs -3: invalid, expected an integer >= 1"),
        (["report", "/nonexistent/dir"], "/nonexistent/dir: not a directory"),
    ],
)
def test_bad_study_and_report_arguments_exit_2(args, message, capsys):
    code, _, err = run_cli(args, capsys)
    assert code == 2 and message in err


# --- the registry ------------------------------------------------------------------------


def test_the_catalog_registers_its_studies_in_order():
    assert list(STUDIES) == [
        "headline", "lecture-replay", "layer-rates", "long-training", "activation-variance", "ensemble",
        "weight-decay", "dropconnect", "noise", "data-size", "normalization", "regularizers", "no-rescale",
        "best-recipe", "transformer", "schedules",
    ]  # fmt: skip
    assert [s.order for s in STUDIES.values()] == [10, 15, *range(20, 160, 10)]  # each catalog study says its place
    assert "mc" in PROBES
    assert PROBES["mc"].run.__module__ == "droplab.studies.catalog.ensemble"  # the probe lives with its study
    from droplab.studies import engine

    # what a study is comes from droplab.studies (or .registry), not re-exported by the engine or the catalog
    assert not {"Analysis", "Study", "Variant"} & set(engine.__all__) and not hasattr(catalog, "STUDIES")


PLANTED = """
from droplab.studies.registry import Analysis, study
from droplab.studies.catalog.common import BASE, fixed, plain


@study(name="planted", order=17, title="A planted study", question="Is one new file enough?",
       variants=fixed(plain()), base=BASE)
def analyze(r):
    return Analysis([], [], {})
"""


def test_a_new_module_in_the_catalog_is_a_new_study_in_its_place(tmp_path, monkeypatch):
    """A study is one new file: a module beside the catalog's is found, imported and registered, in its order."""
    import sys

    (tmp_path / "planted.py").write_text(PLANTED)
    monkeypatch.setattr(catalog, "__path__", [*catalog.__path__, str(tmp_path)])
    try:
        assert "planted" in catalog.discover() and "common" not in catalog.discover()
        assert list(STUDIES)[1:4] == ["lecture-replay", "planted", "layer-rates"]  # order 17: between 15 and 20
    finally:
        STUDIES.pop("planted", None)
        sys.modules.pop("droplab.studies.catalog.planted", None)


def test_studies_are_kept_in_their_order_and_an_order_is_given_once():
    def analyze(r):
        return registry.Analysis([], [], {})

    last, first = registry.Study("last", "", "", lambda quick: [], analyze), registry.Study(
        "first", "", "", lambda quick: [], analyze, order=5
    )
    try:
        registry.register(last)  # no order: after every study that has one
        registry.register(first)
        assert list(STUDIES)[0] == "first" and list(STUDIES)[-1] == "last"
        with pytest.raises(ValueError, match="study 'again': order 10 is taken by study 'headline'"):
            registry.register(registry.Study("again", "", "", lambda quick: [], analyze, order=10))
        assert "again" not in STUDIES
    finally:
        STUDIES.pop("last", None)
        STUDIES.pop("first", None)


def test_a_study_and_its_probe_are_registered_where_they_are_defined(tiny_dir):
    from droplab.data import load_fashion_mnist
    from droplab.studies.jobs import run_job

    @registry.probe("weights", keys=("count",))
    def count_weights(model, data, seed):
        return {"count": sum(p.numel() for p in model.parameters())}

    @registry.study(name="tiny", title="A tiny study", question="Is it registered?",
                    variants=lambda quick: [registry.Variant("p", {"dropout": (0.5,)}, probes=("weights",))],
                    base={"model": "mlp", "hidden": (8,)})  # fmt: skip
    def analyze(r):
        return registry.Analysis([], [], {})

    try:
        study = STUDIES["tiny"]
        assert (study.analyze, study.epochs, list(STUDIES)[-1]) == (analyze, 10, "tiny")
        with pytest.raises(ValueError, match="a study named 'tiny' is already registered"):
            registry.register(study)
        with pytest.raises(ValueError, match="a probe named 'weights' is already registered"):
            registry.probe("weights", keys=())(count_weights)
        data = load_fashion_mnist(tiny_dir, val_size=100, verify=False)
        job = job_config(study, study.variants(True)[0], 0, 1, True, len(data.train_x))
        assert run_job(job, data)["probes"] == {"weights": {"count": 784 * 8 + 8 + 8 * 10 + 10}}
        unknown = registry.Variant("q", probes=("nothing",))
        with pytest.raises(ValueError, match="unknown probe 'nothing', expected one of mc, weights"):
            job_config(study, unknown, 0, 1, True, len(data.train_x))
    finally:
        STUDIES.pop("tiny", None)
        PROBES.pop("weights", None)


def test_backend_ray_without_ray_exits_2_saying_how_to_install_and_writes_nothing(tiny_dir, tmp_path):
    hidden = tmp_path / "no-ray" / "ray"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named ray (hidden by this test)')\n")
    out = tmp_path / "h"
    done = subprocess.run([sys.executable, "-m", "droplab", "study", "headline", "--quick", "--backend", "ray",
                           "--data-dir", str(tiny_dir), "--no-verify", "--val-size", "100", "--out", str(out)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(tmp_path / "no-ray")})  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "--backend ray: the Ray backend needs Ray, which cannot be imported here" in done.stderr
    assert "pip install 'droplab[ray]'" in done.stderr
    assert not out.exists()
