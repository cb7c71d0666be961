"""Studies on a Ray cluster: a real two-node cluster on this machine (tests/ray_cluster.py) gives
the stored results of the local backend bit for bit, survives a worker killed mid-run, stops on
Ctrl-C keeping what finished, and names an unreachable address; no process is left behind.

The cluster runs in a network namespace of its own with only loopback up (``unshare -n``, then
``ip link set lo up``): Ray otherwise binds the machine's own address even when told 127.0.0.1.
The tests skip only where Ray cannot be imported (and fail instead where ``DROPLAB_REQUIRE_RAY``
is set, as .ci/run sets it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

try:
    import ray
except Exception as err:  # not installed, or broken
    if os.environ.get("DROPLAB_REQUIRE_RAY"):  # set by .ci/run: there Ray is installed, so this is a defect
        raise
    pytest.skip(f"Ray cannot be imported here ({err}); pip install 'droplab[ray]' runs these tests",
                allow_module_level=True)

HERE = Path(__file__).resolve().parent
TIMING = {"seconds"}  # a run's time: the only figure of a record that is not a function of its configuration


def _namespace() -> tuple[list[str], str]:
    """How to run a command in a network namespace of its own with loopback only: as root, or in a
    user namespace; where neither can be made (a container without the capability), none."""
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if shutil.which("unshare") and shutil.which("ip"):
            probe = subprocess.run([*prefix, "ip", "link", "set", "lo", "up"], capture_output=True)
            if probe.returncode == 0:
                return prefix, "loopback"
    return [], "none"


@pytest.fixture(scope="module")
def cluster():
    """Run tests/ray_cluster.py once (in a namespace where one can be made), and the local
    backend on the same study with the same threads per run; what they observed."""
    from conftest import write_dataset

    work = Path(tempfile.mkdtemp(prefix="dlray", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    try:
        data = write_dataset(work / "data")
        prefix, netns = _namespace()
        env = {**os.environ, "DROPLAB_NETNS": netns, "PYTHONPATH": str(HERE)}
        subprocess.run([*prefix, sys.executable, str(HERE / "ray_cluster.py"), str(work), str(data)], env=env,
                       timeout=900, check=True)  # fmt: skip
        local = subprocess.run([sys.executable, "-m", "droplab", "study", "headline", "--quick", "--seeds", "2",
                                "--data-dir", str(data), "--no-verify", "--val-size", "100", "--cpus-per-run", "1",
                                "--out", str(work / "local")], capture_output=True, text=True, timeout=300)  # fmt: skip
        assert local.returncode == 0, local.stderr
        yield work, json.loads((work / "observed.json").read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stored(out: Path) -> dict:
    """Every stored record of a study by its key: ``history`` and ``summary`` without the times."""
    records = {}
    for path in sorted((out / "runs").glob("*.json")):
        r = json.loads(path.read_text())
        records[path.name] = {"summary": {k: v for k, v in r["summary"].items() if k not in TIMING},
                              "history": [{k: v for k, v in row.items() if k not in TIMING} for row in r["history"]],
                              "probes": r["probes"], "per_image": r["per_image"]}  # fmt: skip
    return records


def test_the_cluster_has_two_nodes_and_runs_tasks_on_both(cluster):
    work, seen = cluster
    if os.environ.get("DROPLAB_REQUIRE_RAY"):  # .ci/run: the cluster's traffic must stay on loopback
        assert seen["namespace"] == "loopback"
    assert seen["head"]["code"] == 0 and seen["node"]["code"] == 0, (seen["head"]["err"], seen["node"]["err"])
    assert seen["ray"]["code"] == 0, seen["ray"]["err"]
    assert "ray: 2 node(s), 2 CPUs, 1 per run" in seen["ray"]["out"]
    nodes = {json.loads(p.read_text())["machine"]["node"] for p in (work / "ray" / "runs").glob("*.json")}
    assert len(nodes) == 2


def test_ray_stores_the_local_backends_results_bit_for_bit(cluster):
    work, _ = cluster
    local, on_ray = stored(work / "local"), stored(work / "ray")
    assert len(local) == 8 and local.keys() == on_ray.keys()  # the same jobs: same configurations, same threads
    for key in local:
        for field in ("summary", "history", "probes", "per_image"):
            assert on_ray[key][field] == local[key][field], (key, field)
    claims = [json.loads((work / d / "study.json").read_text())["claims"] for d in ("local", "ray")]
    assert claims[0] == claims[1]


def test_a_worker_killed_mid_run_is_retried_and_the_study_completes_the_same(cluster):
    work, seen = cluster
    killed = seen["killed"]
    assert killed["code"] == 0, killed["err"]
    assert len(killed["pids"]) == 1, "the watcher found no worker running a task"
    assert "its Ray worker was lost" in killed["out"] and "submitted again (1 of at most 3)" in killed["out"]
    assert stored(work / "killed") == stored(work / "local")


def test_each_result_records_where_it_ran_and_read_no_data_from_disk(cluster):
    work, _ = cluster
    for path in (work / "ray" / "runs").glob("*.json"):
        machine = json.loads(path.read_text())["machine"]
        assert machine["backend"] == "ray" and machine["threads"] == 1 and machine["versions"]["ray"]
        assert machine["dataset_read_bytes"] == 0  # the data came from the object store


def test_ctrl_c_on_the_driver_keeps_finished_runs_and_the_same_command_resumes(cluster):
    work, seen = cluster
    stopped = seen["stopped"]
    assert stopped["code"] == 130, stopped["err"]
    assert "interrupted by SIGINT after" in stopped["err"] and "the same command resumes" in stopped["err"]
    assert "Traceback" not in stopped["err"]
    assert stopped["stored after"] >= stopped["stored before"] >= 1
    assert not [p for p in (work / "stopped" / "runs").rglob("*") if ".tmp-" in p.name]
    assert seen["resumed"]["code"] == 0, seen["resumed"]["err"]
    assert seen["whole"]["code"] == 0, seen["whole"]["err"]
    assert stored(work / "stopped") == stored(work / "whole")


def test_an_unreachable_address_is_a_clear_error_within_seconds(cluster):
    work, seen = cluster
    bad = seen["unreachable"]
    assert bad["code"] == 2 and "Traceback" not in bad["err"]
    assert "--address 127.0.0.1:" in bad["err"] and "no Ray cluster answers at" in bad["err"]
    assert bad["seconds"] < 15  # the interpreter's start and droplab's imports included
    assert not (work / "nowhere").exists()  # nothing written


def test_ray_stop_leaves_no_process_behind(cluster):
    _, seen = cluster
    assert seen["ray stop"]["code"] == 0, seen["ray stop"]["err"]
    assert seen["left"] == []


def test_compare_runs_on_the_cluster_with_the_local_numbers(cluster):
    work, seen = cluster
    assert seen["compare"]["code"] == 0, seen["compare"]["err"]
    assert seen["compare local"]["code"] == 0, seen["compare local"]["err"]
    on_ray, local = (json.loads((work / d / "compare.json").read_text()) for d in ("compare-ray", "compare-local"))
    assert on_ray.keys() == local.keys() == {"plain", "scratch", "concise"}
    for model in local:
        assert {k: v for k, v in on_ray[model].items() if k not in TIMING} == \
               {k: v for k, v in local[model].items() if k not in TIMING}  # fmt: skip
    assert stored(work / "compare-ray") == stored(work / "compare-local")


def test_more_cpus_per_run_than_any_node_has_is_refused_before_any_write(cluster):
    work, seen = cluster
    big = seen["too many cpus"]
    assert big["code"] == 2 and "Traceback" not in big["err"], big["err"]
    assert "--cpus-per-run 2: invalid, expected at most 1, the CPUs of the cluster's largest node" in big["err"]
    assert not (work / "big").exists()


def test_connecting_keeps_the_drivers_signal_handlers(cluster):
    _, seen = cluster
    assert seen["handlers"]["code"] == 0, seen["handlers"]["err"]
    assert seen["handlers"]["out"].strip().splitlines()[-1] == "kept"


def test_a_node_with_fewer_cores_than_a_run_asks_for_refuses_it(monkeypatch):
    from droplab.studies import ray_backend

    monkeypatch.setattr(ray, "get_runtime_context", lambda: type("C", (), {"get_node_id": lambda self: "ab" * 20})())
    monkeypatch.setattr(ray_backend, "usable_cores", lambda: 2)
    ray_backend._check_node({"train": {"threads": 2}}, "fp32")  # fits
    with pytest.raises(ray_backend.ClusterError, match="has 2 usable core.s., fewer than the 3 threads a run asks"):
        ray_backend._check_node({"train": {"threads": 3}}, "fp32")
    monkeypatch.setattr(ray_backend, "resolve_precision", lambda asked: ("fp32", "no bf16 here"))
    with pytest.raises(ray_backend.ClusterError, match="computes in fp32 where the driver's machine computes in bf16"):
        ray_backend._check_node({"train": {"threads": 1, "precision": "bf16"}}, "bf16")


def test_a_driver_killed_outright_resumes_from_the_store_with_the_same_results(cluster):
    work, seen = cluster
    killed, resumed = seen["driver killed"], seen["driver killed, resumed"]
    assert killed["code"] == -9 and killed["stored before"] >= 1
    assert resumed["code"] == 0, resumed["err"]
    first = re.search(r"\((\d+) already in ", resumed["out"])  # the first stage's line: what the store held
    assert first and int(first.group(1)) >= killed["stored before"]
    assert stored(work / "killed-driver") == stored(work / "whole")
