"""Every exception droplab defines pickles whole (a worker's error crosses to its parent): its
type, its message and its data survive ``pickle``; and no library message names a command-line flag."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
from pathlib import Path

import pytest

import droplab
from droplab.studies.backends import portable

# Sample constructor arguments for every exception class in droplab, by "module.Class". A new
# class needs a row here: test_the_table_names_every_exception_class says which is missing.
SAMPLES = {
    "droplab.checkpoint.CheckpointError": ("cannot read checkpoint /x/checkpoint.pt: Permission denied",),
    "droplab.cli.errors.UsageError": ("study 'grid-search': unknown",),
    "droplab.data.DataError": ("/x/train-images-idx3-ubyte.gz: no such file",),
    "droplab.data.DataNotFound": ([Path("/x"), Path("/y")], "Automatic download is off."),
    "droplab.data.SplitError": ("val_size", 70_000, "an integer from 0 to 59,999"),
    "droplab.interrupt.Interrupted": (2, "after epoch 3", Path("/runs/mlp")),
    "droplab.interrupt.StudyInterrupted": (15, "interrupted by SIGTERM after 2 of 4 runs"),
    "droplab.interrupt.WorkerLost": (9, "a worker process was killed by SIGKILL between runs"),
    "droplab.kernels.cpu.KernelChoiceError": ("fast",),
    "droplab.kernels.native.NativeUnavailable": ("no C compiler: CC is unset and none of cc, gcc, clang is on PATH",),
    "droplab.report.ReportError": (Path("/x/study.json"), "cannot be read: nested too deeply"),
    "droplab.report.NoStudyFound": (Path("/x"),),
    "droplab.rundir.RunDirError": ("cannot use /x",),
    "droplab.rundir.DirectoryUnusable": (Path("/x"), "Permission denied", "the store of runs"),
    "droplab.rundir.DirectoryNotEmpty": (Path("/x"), "study"),
    "droplab.rundir.DirectoryOwned": (Path("/x"), "noise", "headline", "study"),
    "droplab.rundir.DirectoryBusy": (Path("/x"),),
    "droplab.rundir.NotADroplabDirectory": (Path("/x"), "run"),
    "droplab.rundir.RunFinished": (Path("/x"),),
    "droplab.rundir.NoSpace": (Path("/x"), 3 << 20, 40 << 20),
    "droplab.studies.backends.RemoteTraceback": ("Traceback (most recent call last): ...",),
    "droplab.studies.backends.BackendError": ("cpus_per_run", 0, "an integer >= 1"),
    "droplab.studies.ray_backend.RayMissing": ("ModuleNotFoundError: No module named 'ray'",),
    "droplab.studies.ray_backend.ClusterUnreachable": ("10.0.0.5:6379", "Connection refused"),
    "droplab.studies.ray_backend.ClusterError": ("the Ray cluster failed plain, seed 0: TaskUnschedulableError",),
    "droplab.studies.engine.StudyError": ("a study that cannot run",),
    "droplab.studies.engine.StudyArgumentError": ("seeds", 0),
    "droplab.studies.plan.PlanError": (2, 1_000_000, 10_000),
    "droplab.studies.protocol.ProtocolError": ("lr_grid", (0.1, -1.0), "distinct learning rates > 0"),
    "droplab.studies.results.UndeclaredHypothesis": ("headline", "dropout helps"),
    "droplab.verdicts.HypothesisError": ("dropout helps", "margin", -0.3, "a finite number > 0"),
    "droplab.studyfile.FieldError": ("claims[0].mean", "a finite number", float("inf")),
    "droplab.train.checks.CheckpointFieldError": ("epoch", "is negative"),
    "droplab.train.config.ConfigError": ("lr", -1.0, "a finite number > 0"),
    "droplab.train.directory.DataMismatch": (Path("/x"), "abc", "/data", "def", "/other"),
    "droplab.train.loop.Diverged": (3, 17, "the loss", 0.5, Path("/runs/mlp")),
    "droplab.train.state.CheckpointWriteError": (Path("/x/checkpoint.pt"), 28, "No space left on device", True),
}
KEYWORDS = {"droplab.studyfile.FieldError": {"missing": False}}


def exception_classes() -> dict[str, type]:
    """Every exception class defined in a module of droplab, by "module.Class"."""
    found = {}
    for info in pkgutil.walk_packages(droplab.__path__, "droplab."):
        if info.name.endswith("__main__"):  # runs the command line
            continue
        for obj in vars(importlib.import_module(info.name)).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found[f"{info.name}.{obj.__qualname__}"] = obj
    return found


CLASSES = exception_classes()


def test_the_table_names_every_exception_class():
    assert len(CLASSES) > 20 and sorted(CLASSES) == sorted(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_an_exception_pickles_with_its_type_message_and_data(name):
    err = CLASSES[name](*SAMPLES[name], **KEYWORDS.get(name, {}))
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err) and vars(back) == vars(err)
    assert back.args == err.args
    assert portable(err) is err  # a worker sends it as it is
    if not name.startswith("droplab.cli."):  # the CLI's own messages name its options
        assert "--" not in str(err)


@pytest.mark.parametrize(
    "err, message",
    [
        (CLASSES["droplab.rundir.DirectoryNotEmpty"](Path("/x"), "study"),
         "output directory /x already holds results; droplab never overwrites a study"),
        (CLASSES["droplab.rundir.NoSpace"](Path("/x"), 3 << 20, 40 << 20),
         "not enough space in /x: 3.0 MiB free, this run's checkpoints and results need about 40.0 MiB"),
        (CLASSES["droplab.report.NoStudyFound"]("/x"), "/x: no study.json in it or in its subdirectories"),
        (CLASSES["droplab.studyfile.FieldError"]("seeds", "an integer", missing=True),
         "seeds: missing; expected an integer"),
        (CLASSES["droplab.studies.plan.PlanError"](2, 1_000_000, 10_000),
         "2,000,000 runs (2 configurations x 1,000,000 seeds) is over the limit of 10,000 runs for one study"),
    ],
)  # fmt: skip
def test_messages_are_built_from_the_data(err, message):
    assert str(err) == message and str(pickle.loads(pickle.dumps(err))) == message


class Foreign(Exception):
    def __init__(self, code: int, where: str) -> None:
        super().__init__(f"code {code} {where}")  # its args are not its constructor's: unpickling fails


def test_a_foreign_exception_that_does_not_pickle_crosses_as_a_runtime_error():
    with pytest.raises(TypeError):
        pickle.loads(pickle.dumps(Foreign(3, "here")))
    sent = portable(Foreign(3, "here"))
    assert type(sent) is RuntimeError and str(sent) == "Foreign: code 3 here"
