"""A study's store of runs, treated as shared and untrusted: keyed by the data, records checked,
plans checked before they run."""

import json
import subprocess
import sys
import time

import pytest
from conftest import write_dataset

from droplab.studies import STUDIES, run_study
from droplab.studies.plan import MAX_RUNS, PlanError, check_size
from droplab.studies.protocol import Protocol

# the lecture's protocol: one run per (variant, seed), no tuning runs (the store is what is tested here)
ONE = {"seeds": 1, "quick": True, "verify": False, "val_size": 100, "protocol": Protocol("lecture")}


def study(data_dir, out, store, lines=None):
    log = (lines.append if lines is not None else lambda line: None)
    return run_study(STUDIES["headline"], data_dir, out, store=store, log=log, **ONE)


@pytest.fixture
def stored(tiny_dir, tmp_path):
    """A headline study's store on the tiny data (2 runs), and its report."""
    store = tmp_path / "store"
    return store, study(tiny_dir, tmp_path / "first", store)


def records(store):
    return sorted(store.glob("*.json"))


def test_a_store_never_serves_runs_of_other_data(stored, tmp_path):
    store, first = stored
    altered = write_dataset(tmp_path / "altered", n_train=600, n_test=199)  # one test image fewer
    lines = []
    second = study(altered, tmp_path / "second", store, lines)
    assert second["runs_trained"] == second["runs"] == 2, lines[0]
    assert "(0 already in" in lines[0]
    keys = {r["key"] for v in first["variants"].values() for r in v["per_seed"]}
    assert not keys & {r["key"] for v in second["variants"].values() for r in v["per_seed"]}
    assert len(records(store)) == 4
    again = study(write_dataset(tmp_path / "same-as-first", n_train=600, n_test=200), tmp_path / "third", store)
    assert again["runs_trained"] == 0  # the same bytes elsewhere: the same data, served


BAD_RECORDS = [
    ("NaN accuracy", lambda r: r["summary"].update(val_acc=None), "summary.val_acc is None: expected a finite number"),
    ("huge accuracy", lambda r: r["summary"].update(test_acc=1e308),
     "summary.test_acc is 1e+308: expected an accuracy"),
    ("negative loss", lambda r: r["summary"].update(val_loss=-1.0), "summary.val_loss is -1.0: expected a number >= 0"),
    ("string seconds", lambda r: r["summary"].update(seconds="1"), "summary.seconds is '1'"),
    ("missing key", lambda r: r["summary"].pop("val_acc"), "summary lacks val_acc"),
    ("no history", lambda r: r.pop("history"), "no history"),
    ("history row", lambda r: r["history"].__setitem__(0, [1, 2]), "history[0] is not a metrics row"),
    ("other job", lambda r: r["job"]["train"].update(lr=0.5), "recorded for another job"),
    ("not a dict", lambda r: r.clear() or r.update(x=1), "no job, summary, history, probes"),
    ("400-digit accuracy", lambda r: r["summary"].update(val_acc=10**400), "summary.val_acc is 1000000000"),
    ("history cut short", lambda r: r.update(history=r["history"][:1]), "history has 1 rows: the job evaluates 2"),
    ("another seed", lambda r: r["summary"].update(seed=7), "summary.seed is 7: the job's is 0"),
    ("history epochs", lambda r: r["history"][1].update(epoch=5), "history[1].epoch is 5: expected 2"),
]


@pytest.mark.parametrize("what, change, problem", BAD_RECORDS, ids=[b[0] for b in BAD_RECORDS])
def test_a_damaged_record_is_set_aside_and_retrained(what, change, problem, stored, tiny_dir, tmp_path):
    store, first = stored
    path = records(store)[0]
    original = json.loads(path.read_text())
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))
    lines = []
    again = study(tiny_dir, tmp_path / "again", store, lines)
    assert again["runs_trained"] == 1
    assert any(f"set aside as {path.name}.rejected: {problem}" in line for line in lines), lines
    assert path.with_name(path.name + ".rejected").read_text() == json.dumps(record)  # kept, not lost
    retrained = json.loads(path.read_text())
    assert retrained["job"] == original["job"] and retrained["history"] == original["history"]  # bit for bit


def test_unreadable_json_is_set_aside(stored, tiny_dir, tmp_path):
    store, _ = stored
    path = records(store)[0]
    path.write_text("{not json")
    lines = []
    assert study(tiny_dir, tmp_path / "again", store, lines)["runs_trained"] == 1
    assert any("cannot be read" in line for line in lines)


def test_absurd_plans_are_refused_at_once():
    assert check_size(3, 5) == 15
    with pytest.raises(PlanError, match=r"3,000,000 runs \(3 configurations x 1,000,000 seeds\)") as err:
        check_size(3, 1_000_000)
    e = err.value
    assert (e.configurations, e.seeds, e.limit, e.runs) == (3, 10**6, MAX_RUNS, 3 * 10**6)
    with pytest.raises(PlanError):
        check_size(1, MAX_RUNS + 1)
    assert check_size(1, MAX_RUNS) == MAX_RUNS


def test_the_plan_is_printed_before_the_runs(tiny_dir, tmp_path):
    lines = []
    study(tiny_dir, tmp_path / "s", tmp_path / "store", lines)
    assert lines[0].startswith("headline (runs): 2 configurations x 1 seeds = 2 runs (0 already in")
    assert "of training to go (one step of each of its 2 kinds of run timed on this machine)" in lines[0]
    assert lines[1].startswith("  [1/2]")
    lines.clear()
    study(tiny_dir, tmp_path / "s2", tmp_path / "store", lines)
    assert "about 0 s of training to go (from the 2 runs already in the store)" in lines[0]


def test_a_million_seeds_exit_2_in_seconds(tiny_dir, tmp_path):
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "droplab", "study", "headline", "--quick", "--seeds", "1000000", "--data-dir",
         str(tiny_dir), "--no-verify", "--val-size", "100", "--out", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--seeds 1000000: 2,000,004 runs (2 configurations x 1,000,000 seeds, and 4 tuning runs) is over the " \
           "limit of 10,000" \
        in proc.stderr and "--max-runs" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s").exists()
    assert time.monotonic() - start < 60  # not minutes of planning (a generous bound for a loaded machine)


def test_unreadable_records_of_every_kind_are_set_aside(stored, tiny_dir, tmp_path):
    """Nested too deep for the JSON parser, a FIFO (never opened for reading: it would block)."""
    import os

    store, _ = stored
    deep, fifo = records(store)
    deep.write_text("[" * 100_000)
    fifo.unlink()
    os.mkfifo(fifo)
    lines = []
    assert study(tiny_dir, tmp_path / "again", store, lines)["runs_trained"] == 2
    assert any("RecursionError" in line for line in lines) and any("not a regular file" in line for line in lines)


def test_a_record_equal_to_the_job_up_to_defaults_is_served_as_the_job(stored, tiny_dir, tmp_path):
    """Fields at their default are left out of a job's key; a record that leaves them out (or
    writes 2.0 for 2) is the same job, and is served with the job's own fields."""
    store, _ = stored
    for path in records(store):
        record = json.loads(path.read_text())
        record["job"]["train"]["epochs"] = float(record["job"]["train"]["epochs"])
        del record["job"]["train"]["hidden"]  # the default (256, 256) unless overridden
        path.write_text(json.dumps(record))
    again = study(tiny_dir, tmp_path / "again", store)
    assert again["runs_trained"] == 0
    assert all(v["config"]["train"]["hidden"] == [256, 256] for v in again["variants"].values())


def test_a_probe_record_must_hold_the_probes_figures():
    from droplab.studies import PROBES
    from droplab.studies.jobs import canonical
    from droplab.studies.records import SUMMARY_KEYS, record_problem

    PROBE_KEYS = {name: p.keys for name, p in PROBES.items()}
    job = {"train": {"epochs": 1, "seed": 0}, "probes": ["mc"]}
    record = {"job": job, "summary": {**dict.fromkeys(SUMMARY_KEYS, 0.5), "epochs": 1, "seed": 0},
              "history": [{"epoch": 1, "train_loss": 1, "train_acc": 0.5, "val_loss": 1, "val_acc": 0.5,
                           "train_loss_eval": 1}], "probes": {"mc": {}}}  # fmt: skip
    assert record_problem(record, job, canonical, PROBE_KEYS).startswith("probes.mc lacks ks, mc100_acc")
    record["probes"]["mc"] = dict.fromkeys(PROBE_KEYS["mc"], 0.5)
    assert record_problem(record, job, canonical, PROBE_KEYS) is None


def test_more_threads_per_run_than_cores_are_capped(tiny_dir, tmp_path):
    from droplab.studies.backends import Local
    from droplab.threads import usable_cores

    lines = []
    report = run_study(STUDIES["headline"], tiny_dir, tmp_path / "s", store=tmp_path / "store", log=lines.append,
                       backend=Local(64), **ONE)  # fmt: skip
    cores = usable_cores()
    assert f"on this process, {cores} thread(s) (threads 64 capped at the {cores} core" in lines[0]
    assert {r["summary"]["threads"] for v in report["variants"].values() for r in v["per_seed"]} == {cores}


def test_an_unsound_partial_checkpoint_in_a_shared_store_makes_its_job_start_over(stored, tiny_dir, tmp_path):
    from droplab import checkpoint

    store, first = stored
    path = records(store)[0]
    original = json.loads(path.read_text())
    path.unlink()
    checkpoint.save(store / "partial" / f"{path.stem}.pt", {"epoch": 99, "model": {}})  # a valid digest
    lines = []
    again = study(tiny_dir, tmp_path / "again", store, lines)
    assert again["runs_trained"] == 1
    assert json.loads(path.read_text())["history"] == original["history"]  # trained from the start, bit for bit
    assert not (store / "partial" / f"{path.stem}.pt").exists()
