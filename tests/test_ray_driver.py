"""The Ray backend's driver loop against a stand-in for Ray (no cluster, no Ray needed): a job
whose worker dies is submitted again up to ``max_retries`` times, then the study stops; a job
that fails is the study's error, raised with its worker's traceback; a stop cancels the runs under
way and keeps the finished ones; results are stored in the order they finish."""

from __future__ import annotations

import signal
import types

import pytest

from droplab.data import DataError
from droplab.interrupt import StopRequest, StudyInterrupted, WorkerLost
from droplab.studies.backends import RemoteTraceback, Tally
from droplab.studies.ray_backend import ClusterError, RayBackend


class _Lost(Exception):
    pass


class _Other(Exception):
    pass


class _TaskError(Exception):
    def __init__(self, cause):
        super().__init__(f"the task failed:\n{cause!r}")
        self.cause = cause


class FakeRay:
    """What RayBackend.run uses of Ray: ``script[seed]`` says, per attempt, how the task of that seed ends."""

    exceptions = types.SimpleNamespace(RayTaskError=_TaskError, WorkerCrashedError=_Lost, NodeDiedError=_Lost,
                                       LocalRayletDiedError=_Lost, ObjectLostError=_Lost, OutOfMemoryError=_Lost)

    def __init__(self, script: dict, cpus: int = 2, on_wait=None) -> None:
        self.script, self.cpus, self.on_wait = script, cpus, on_wait
        self.submitted, self.cancelled, self.attempts = [], [], {}

    def remote(self, job, box, precision):  # the task's .remote
        seed = job["seed"]
        self.attempts[seed] = self.attempts.get(seed, -1) + 1
        ref = (seed, self.attempts[seed])
        self.submitted.append(ref)
        return ref

    def put(self, value):
        return "data"

    def nodes(self):
        return [{"Alive": True, "Resources": {"CPU": self.cpus}}] if self.cpus else []

    def wait(self, refs, num_returns, timeout):
        if self.on_wait:
            self.on_wait(self)
        first = min(refs)  # the lowest seed's task ends first
        return [first], [r for r in refs if r != first]

    def get(self, ref):
        seed, attempt = ref
        how = self.script[seed][attempt]
        if how == "lost":
            raise _Lost("worker died")
        if how == "unschedulable":
            raise _Other("the task cannot be scheduled:\nno node has that resource")
        if isinstance(how, Exception):
            raise _TaskError(how)
        return {"seed": seed, "attempt": attempt}

    def cancel(self, ref, force):
        self.cancelled.append(ref)


def backend_on(fake: FakeRay, max_retries: int = 2) -> tuple[RayBackend, list]:
    lines = []
    b = RayBackend("10.0.0.5:6379", max_retries=max_retries, log=lines.append)
    b._ray, b._remote, b._data = fake, fake, (None, "data")
    b._data_ref = lambda data: "data"
    return b, lines


def todo(n: int) -> dict:
    return {("v", s): (f"key{s}", {"seed": s, "train": {}}) for s in range(n)}


def drive(b: RayBackend, jobs: dict, stop: StopRequest | None = None) -> tuple[list, Tally]:
    stored, tally = [], Tally(total=len(jobs))
    b.run(jobs, None, None, stop or StopRequest(), lambda tag, key, r: stored.append((tag, key, r)), tally)
    return stored, tally


def test_a_lost_worker_is_retried_and_the_job_stored_once():
    fake = FakeRay({0: ["lost", "lost", "ok"], 1: ["ok"], 2: ["ok"]})
    b, lines = backend_on(fake, max_retries=2)
    stored, tally = drive(b, todo(3))
    assert sorted((tag, key) for tag, key, _ in stored) == [(("v", s), f"key{s}") for s in range(3)]
    assert [r for tag, _, r in stored if tag == ("v", 0)] == [{"seed": 0, "attempt": 2}]
    assert tally.retried == 2 and tally.running == 0
    said = "  v, seed 0: its Ray worker was lost (_Lost); submitted again"
    assert lines == [f"{said} ({k} of at most 2)" for k in (1, 2)]
    assert len(fake.submitted) == 5 and fake.cancelled == []


def test_a_job_lost_more_often_than_it_may_be_retried_stops_the_study_and_cancels_the_others():
    fake = FakeRay({0: ["lost", "lost", "lost"], 1: ["ok"], 2: ["ok"]}, cpus=2)
    b, _ = backend_on(fake, max_retries=2)
    with pytest.raises(WorkerLost, match=r"v, seed 0: its Ray worker was lost \(_Lost\) 3 times; the study stopped"):
        drive(b, todo(3))
    assert fake.cancelled == [(1, 0)]  # the other run under way; seed 2 was never submitted


def test_a_job_that_fails_raises_its_own_error_with_the_workers_traceback():
    fake = FakeRay({0: ["ok"], 1: [DataError("/x: damaged")]}, cpus=1)
    b, _ = backend_on(fake)
    with pytest.raises(DataError, match="/x: damaged") as err:
        drive(b, todo(2))
    assert isinstance(err.value.__cause__, RemoteTraceback) and "DataError" in str(err.value.__cause__)


def test_a_cluster_left_without_a_node_that_fits_a_run_is_an_error_not_a_hang():
    b, _ = backend_on(FakeRay({0: ["ok"]}, cpus=0))
    with pytest.raises(ClusterError, match="no live node of the cluster has the 1 CPUs a run asks for any more; "
                                           "0 of 1 runs finished"):  # fmt: skip
        drive(b, todo(1))


def test_another_ray_error_ends_the_study_with_a_clear_message():
    fake = FakeRay({0: ["unschedulable"]})
    fake.exceptions = types.SimpleNamespace(**vars(FakeRay.exceptions), RayError=_Other)
    b, _ = backend_on(fake)
    with pytest.raises(ClusterError, match="the Ray cluster failed v, seed 0: _Other: no node has that resource"):
        drive(b, todo(1))


def test_no_more_runs_in_flight_than_the_cluster_holds():
    fake = FakeRay({s: ["ok"] for s in range(5)}, cpus=2)
    seen = []
    fake.on_wait = lambda f: seen.append(len(f.submitted) - len(seen))
    b, _ = backend_on(fake)
    b.cpus_per_run = 1
    stored, _ = drive(b, todo(5))
    assert len(stored) == 5 and max(seen) <= 2


def test_a_stop_cancels_the_runs_under_way_and_keeps_the_finished(own_handlers):
    def stop_after_first(fake):
        if len(fake.submitted) >= 2 and stop.signum is None and fake.cancelled == [] and stored:
            stop._handle(signal.SIGINT, None)

    fake = FakeRay({s: ["ok"] for s in range(4)}, cpus=2, on_wait=lambda f: stop_after_first(f))
    b, _ = backend_on(fake)
    stored, tally = [], Tally(total=4)
    with StopRequest(at_once=False) as stop:
        with pytest.raises(StudyInterrupted, match="by SIGINT after 2 of 4 runs; 1 run under way cancelled"):
            b.run(todo(4), None, None, stop, lambda tag, key, r: stored.append(tag), tally)
    # the signal came as the third run was submitted: the run that ended meanwhile is stored, the third cancelled
    assert stored == [("v", 0), ("v", 1)] and fake.cancelled == [(2, 0)] and tally.running == 0


def test_one_progress_bar_shows_finished_running_retried_and_an_eta_on_a_terminal_only():
    import io

    from rich.console import Console

    from droplab.progress import StudyProgress

    screen = io.StringIO()
    with StudyProgress("headline", Console(file=screen, force_terminal=True, width=120)) as bar:
        bar(Tally(total=10, finished=4, trained=2, running=2, retried=1))
        bar._progress.refresh()
    shown = screen.getvalue()
    assert "headline" in shown and "4/10" in shown and "2 running, 1 retried, ETA " in shown
    piped = io.StringIO()
    with StudyProgress("headline", Console(file=piped)) as bar:  # not a terminal: nothing at all
        bar(Tally(total=10, finished=4, trained=2, running=2, retried=1))
    assert piped.getvalue() == ""
