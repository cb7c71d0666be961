"""A fuzzer for the ``droplab`` command line: hostile option values, every invocation a clean end.

Hypothesis draws option values from hostile grammars (overflowing floats, huge integers,
malformed numbers, odd unicode, wrong types, long, deep and odd paths, wrong combinations)
and runs ``droplab.cli.main`` in this process. Every invocation must end with exit status
0, 1, 2 or 3, no exception escaping ``main`` and no "Traceback" in its output; a nonzero
status comes with a message, and a bad value of an option (the only option changed from a
working command) exits 2 with a message naming that option (or 3: training diverged).

Every case is tiny: 1 or 2 epochs of an 8-unit MLP on 500 generated images, ``study
--quick`` with one seed on the same images (its runs kept in a shared store, so most study
cases train nothing), ``check`` with few draws. A drawn command that would mean real work
(more epochs, wide layers, many seeds or draws, a search for the real data set, worker
pools) is left out before it runs (``_too_costly``), by parsing it with droplab's own
parser; values so large that no machine could do the work (2**63 hidden units, 2**40 draws)
stay in, since those must be refused or fail fast. A soft address-space limit guards the
machine should such a value be tried for real anyway: the allocation then fails at once.

The examples are derandomized, so CI runs the same invocations every time (about 650);
``DROPLAB_FUZZ_COUNT_FILE``, when set, names a file the count is written to.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import write_dataset
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from droplab.cli import build_parser, main
from droplab.train import TrainConfig

IS_ROOT = os.geteuid() == 0
ALLOWED = {0, 1, 2, 3}
COUNT = {"invocations": 0}

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much, HealthCheck.too_slow],
)

# --- grammars ----------------------------------------------------------------------------

ODD_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00\n")
ODD_TEXT = st.text(ODD_CHARS, max_size=10)

HUGE_INTS = [str(v) for v in (2**31, 2**32, 2**63 - 1, 2**63, 2**64, 10**30, 10**100)] + ["9" * 400]
NEG_INTS = [str(v) for v in (-1, -2, -(2**31), -(2**63), -(2**64), -(10**30))] + ["-0", "0"]
FLOAT_HOSTILE = [
    "1e308", "-1e308", "1e309", "-1e309", "1.7976931348623157e308", "3.5e38", "3.4028236e38", "inf", "-inf",
    "Infinity", "nan", "-nan", "NaN", "-0.0", "0.0", "5e-324", "-5e-324", "1e-320", "2.2250738585072014e-308",
    "1e-45", "0." + "0" * 400 + "1", "1" + "0" * 400 + ".0",
]  # fmt: skip
MALFORMED = [
    "", " ", "\t", "1e", "e5", "0x10", "0o17", "0b101", "1_000", "1__0", "١٢", "١", "٣.٥", "½", "∞", "１２",
    "𝟙", "\u00a01", "\u200b1", "1\u200b", "+", "-", "--", "---", ".", "-.", "1,5", "1.5.5", "1e5e5", "1j",
    "one", "None", "null", "True", "[1]", "(0.5)", "0.5,0.5", "nan(0x1)", "1" * 5000, "-" + "1" * 5000,
    "%d", "{}", "'1'", '"1"', "\\x31", "\udcff", "1\udcff",
]  # fmt: skip

LONG = "x" * 300
PATHS = [
    LONG, "x" * 255, "x" * 256, "é" * 128, "名" * 90, "a/" * 150 + "run", "d/" * 2100 + "run",
    "nonexistent/deep/er/run",
    ".", "..", "../x", "../../x", "", " ", "run ", " run", "-", "--", "-out", "~", "~/run", "$HOME", "*", "?", "a\\b",
    "a:b", "a\tb", "\u202eevil", "🙂", "名前/ラン", "\udcffname", "\x1b[31mred", "con", "./././x", "a///b",
    "afile", "afile/sub", "full", "empty", "/proc/self", "/proc/self/nope/deeper", "/dev/null/sub",
]  # fmt: skip
if not IS_ROOT:
    PATHS.append("{ro}")  # a directory without write permission (root writes anyway)
OUT_PATHS = PATHS + ["/", "/dev/null"]  # --out refuses an existing, non-empty directory or a file
WRITE_PATHS = PATHS  # where droplab may create things (runs root, store, report file): never "/" or /dev
DATA_DIRS = [
    "{tiny}", "{notest}", "{notrain}", "{onetest}", "{garbage}", "{truncated}", "{swapped}", "/", "/proc/self",
    "/dev/null", ".", "afile", "full", "empty", LONG, "d/" * 2100, "\udcff", "nonexistent", "{tiny}/..",
]  # fmt: skip  (never "": that searches for the real data set, or downloads it)
RUN_DIRS = ["{finished}", "{unfinished}", "{diverged}", "{damagedrun}", "{emptyconfig}", "{tiny}"] + PATHS


def ints(*valid: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([str(v) for v in valid]),
        st.sampled_from(HUGE_INTS),
        st.sampled_from(NEG_INTS),
        st.sampled_from(FLOAT_HOSTILE + MALFORMED),
        ODD_TEXT,
    )


def floats(*valid: float) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([str(v) for v in valid]),
        st.sampled_from(FLOAT_HOSTILE),
        st.sampled_from(HUGE_INTS + NEG_INTS),
        st.floats().map(repr),
        st.sampled_from(MALFORMED),
        ODD_TEXT,
    )


def choices(*valid: str) -> st.SearchStrategy[str]:
    odd = [v.upper() for v in valid] + [v + " " for v in valid] + [v + "\u200b" for v in valid]
    return st.one_of(st.sampled_from(valid), st.sampled_from(odd), st.sampled_from(MALFORMED), ODD_TEXT)


def several(values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(values, min_size=1, max_size=3)


TRAINING = {  # _training_options, shared by train and compare
    "--hidden": several(ints(1, 8, 16, 64)),
    "--dropout": several(floats(0, 0.5, 0.999, 1)),
    "--dropout-impl": choices("fast", "reference"),
    "--epochs": ints(1, 2),
    "--batch-size": ints(1, 10, 50, 64, 500, 501),
    "--lr": floats(0.1, 0.5, 1e-3, 10, 1e6),
    "--optimizer": choices("sgd", "adam"),
    "--momentum": floats(0, 0.5, 0.9, 0.999999),
    "--weight-decay": floats(0, 1e-4, 0.5, 10, 1e10),
    "--seed": ints(0, 1, 12345),
    "--val-size": ints(1, 100, 500, 550, 599, 600, 60000),
    "--split-seed": ints(0, 1, 2**32),
    "--threads": ints(1, 2),
}
TRAIN = TRAINING | {
    "--model": choices("scratch", "concise", "plain", "mlp"),
    "--recipe": choices("lecture", "best"),
    "--noise": choices("dropout", "gaussian", "dropconnect"),
    "--norm": choices("none", "batch", "layer"),
    "--max-norm": floats(0, 1, 3, 1e-30),
    "--train-size": ints(0, 50, 100, 499, 500, 501),
    "--schedule": choices("constant", "onecycle", "cosine"),
    "--augment": ints(0, 1, 8, 9),
    "--checkpoint-every": ints(0, 1, 3),
}
COMPARE = TRAINING | {"--seeds": ints(1, 2)}
STUDY = {"--seeds": ints(1, 2), "--epochs": ints(1, 2), "--cpus-per-run": ints(1),
         "--val-size": ints(1, 100, 599, 600, 60000)}
CHECK = {"--draws": ints(1, 2, 1000, 20000), "--seed": ints(0, 1, 2**32)}

# a message for a bad value of these options may name another option instead
ALSO_NAMED = {
    "--train-size": ("--batch-size",),
    "--val-size": ("--batch-size",),
    "--noise": ("--model",),
    "--norm": ("--model",),
    "--dropout": ("--hidden",),
    "--hidden": ("--dropout",),
}

TINY = {
    "--hidden": ["8"], "--dropout": ["0.5"], "--batch-size": ["50"], "--val-size": ["100"], "--epochs": ["1"],
    "--threads": ["1"], "--data-dir": ["{tiny}"],
}  # fmt: skip


def _argv(command: list[str], options: dict[str, list[str]], flags: tuple[str, ...] = ("--no-verify",)) -> list[str]:
    argv = list(command)
    for option, values in options.items():
        argv += [option, *values]
    return argv + list(flags)


def _with(base: dict[str, list[str]], changes: dict[str, list[str]]) -> dict[str, list[str]]:
    options = {**base, **changes}
    if "--hidden" in changes and "--dropout" not in changes:  # keep the layer count consistent
        options["--dropout"] = ["0.5"] * len(changes["--hidden"])
    if "--dropout" in changes and "--hidden" not in changes:
        options["--hidden"] = ["8"] * len(changes["--dropout"])
    if "--recipe" in changes:  # a recipe sets the model options itself; keep the run tiny otherwise
        for option in ("--hidden", "--dropout", "--batch-size"):
            if option not in changes:
                options.pop(option, None)
    return options


@st.composite
def changes(draw, grammar: dict, most: int = 3) -> dict[str, list[str]]:
    """1 to ``most`` options of ``grammar``, each with a drawn value."""
    names = draw(st.lists(st.sampled_from(sorted(grammar)), min_size=1, max_size=most, unique=True))
    out = {}
    for name in names:
        value = draw(grammar[name])
        out[name] = value if isinstance(value, list) else [value]
    return out


# --- the world the invocations run in ----------------------------------------------------


@dataclass
class World:
    root: Path
    tokens: dict[str, str]
    store: Path


WORLD: World | None = None


def _write_odd_datasets(root: Path) -> dict[str, str]:
    tiny = write_dataset(root / "tiny")
    notest = write_dataset(root / "notest", n_test=0)
    notrain = write_dataset(root / "notrain", n_train=0)
    onetest = write_dataset(root / "onetest", n_train=110, n_test=1)
    garbage = write_dataset(root / "garbage")
    for f in garbage.iterdir():
        f.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    truncated = write_dataset(root / "truncated")
    for f in truncated.iterdir():
        f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    swapped = write_dataset(root / "swapped")  # labels where the images should be
    images, labels = (swapped / "train-images-idx3-ubyte.gz"), (swapped / "train-labels-idx1-ubyte.gz")
    raw_images = images.read_bytes()
    images.write_bytes(labels.read_bytes())
    labels.write_bytes(raw_images)
    return {
        "{tiny}": str(tiny), "{notest}": str(notest), "{notrain}": str(notrain), "{onetest}": str(onetest),
        "{garbage}": str(garbage), "{truncated}": str(truncated), "{swapped}": str(swapped),
    }  # fmt: skip


def _case_dir() -> Path:
    """A fresh working directory, two levels below a fresh case directory (so '..' and '../..' are
    this case's own), holding a file, a non-empty and an empty directory."""
    case = WORLD.root / "cases" / f"{COUNT['invocations']:05d}"
    cwd = case / "p" / "cwd"
    cwd.mkdir(parents=True)
    (cwd / "afile").write_text("not a directory\n")
    (cwd / "full").mkdir()
    (cwd / "full" / "keep.txt").write_text("results\n")
    (cwd / "empty").mkdir()
    if not IS_ROOT:
        (cwd / "ro").mkdir(mode=0o555)
    return cwd


def _substitute(argv: list[str], cwd: Path, copy: bool = True) -> list[str]:
    tokens = dict(WORLD.tokens)
    tokens["{ro}"] = str(cwd / "ro")
    if copy and any("{unfinished}" in a for a in argv):  # resumed for real: each case its own copy
        own = cwd.parent / "unfinished"
        shutil.copytree(WORLD.tokens["{unfinished}"], own)
        tokens["{unfinished}"] = str(own)
    out = []
    for a in argv:
        for token, path in tokens.items():
            a = a.replace(token, path)
        out.append(a)
    return out


@dataclass
class Outcome:
    argv: list[str]
    cwd: Path
    code: object
    out: str
    err: str
    exc: BaseException | None
    seconds: float


def invoke(template: list[str], keep: bool = False) -> Outcome:
    """Run ``droplab <template>`` in this process, in a fresh working directory; {tokens} in the
    arguments name the world's files."""
    COUNT["invocations"] += 1
    cwd = _case_dir()
    argv = _substitute(template, cwd)
    out, err = io.StringIO(), io.StringIO()
    here, threads = os.getcwd(), torch.get_num_threads()
    code, exc = None, None
    start = time.perf_counter()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exit:
                code = exit.code
            except Exception as e:  # escaped main: what a user sees as a traceback
                exc = e
    finally:
        os.chdir(here)
        torch.set_num_threads(threads)
        if not keep:
            shutil.rmtree(cwd.parent.parent, ignore_errors=True)
    code = 0 if code is None and exc is None else code
    return Outcome(argv, cwd, code, out.getvalue(), err.getvalue(), exc, time.perf_counter() - start)


def check(o: Outcome, option: str | None = None) -> Outcome:
    """Every invocation: a status in {0, 1, 2, 3}, no traceback, a message with a nonzero status.
    ``option``: the one option changed from a working command; a bad value of it exits 2 naming it."""
    with contextlib.suppress(InvalidArgument):  # outside a hypothesis test
        note(f"argv: {o.argv!r}\nexit: {o.code!r}\nstderr: {o.err[-2000:]}")
    if o.exc is not None:
        raise o.exc  # an exception escaped main (hypothesis tells distinct ones apart by where they were raised)
    assert "Traceback (most recent call last)" not in o.err + o.out, f"traceback printed by {o.argv!r}"
    assert o.code in ALLOWED, f"exit status {o.code!r} (expected 0, 1, 2 or 3) for {o.argv!r}"
    if o.code != 0:
        assert o.err.strip(), f"exit {o.code} without a message for {o.argv!r}"
    if option is not None and o.code not in (0, 3):
        assert o.code == 2, f"a bad {option} value exits {o.code}, not 2: {o.err.strip()[-300:]!r}"
        names = (option, *ALSO_NAMED.get(option, ()))
        # argparse takes a value such as -1e308 after --dropout 0.5 for an option: it names the value instead
        stray = re.search(r"unrecognized arguments: (.*)", o.err)
        named = any(n in o.err for n in names) or (stray is not None and stray.group(1).split()[0] in o.argv)
        assert named, f"the message does not name {option}: {o.err.strip()[-300:]!r}"
    return o


_DEFAULT_EPOCHS = TrainConfig().epochs  # --recipe keeps its own epochs when --epochs is left at this


def _too_costly(argv: list[str]) -> str | None:
    """Why running ``argv`` would be real work (so the fuzzer leaves it out), or None.
    Parsed with droplab's own parser, defaults included."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit:
        return None  # refused by argparse, or --help / --version
    except Exception:  # argparse itself failing: the invocation will show it
        return None

    def between(value, low, high) -> bool:  # work grows with value in (low, high)
        return isinstance(value, int) and low < value < high

    cmd = args.command
    if cmd == "check":
        return "draws" if between(args.draws, 10**6, 2**40) else None
    if cmd == "report":
        return None
    if cmd in ("train", "compare") and not getattr(args, "resume", None):
        if not args.data_dir:
            return "searches for the real data set"
        if args.epochs > 2 or (getattr(args, "recipe", None) and args.epochs == _DEFAULT_EPOCHS):
            return "epochs"
        if len(args.hidden) > 6 or any(between(h, 1024, 2**31) for h in args.hidden):
            return "hidden"
        if cmd == "compare" and (args.seeds > 2 or any(h > 64 for h in args.hidden)):
            return "compare size"
    if cmd == "train" and args.resume and not args.data_dir:
        return "searches for the real data set"
    if cmd in ("train", "compare") and between(args.threads, 2, 2**31):
        return "threads"
    if cmd == "study":
        if args.name == "all" or not args.quick or not args.data_dir:
            return "a whole study"
        if args.epochs is not None and args.epochs > 2:
            return "epochs"
        if between(args.seeds, 2, 2**40):
            return "seeds"
    return None


def fuzz(template: list[str], option: str | None = None) -> Outcome:
    real = _substitute(template, WORLD.root, copy=False)  # paths of the world, for the cost check only
    reason = _too_costly(real)
    assume(reason is None)
    return check(invoke(template), option)


@pytest.fixture(scope="module", autouse=True)
def world(tmp_path_factory):
    """Data sets (good and odd), finished, unfinished, diverged and damaged runs, a study and its
    store, damaged studies; a soft address-space limit; one torch thread."""
    global WORLD
    root = tmp_path_factory.mktemp("cli-fuzz")
    tokens = _write_odd_datasets(root / "data")
    store = root / "store"
    WORLD = World(root, tokens, store)
    limits = resource.getrlimit(resource.RLIMIT_AS)
    vm = int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
    soft = vm + (8 << 30)
    if limits[1] == resource.RLIM_INFINITY or soft < limits[1]:
        resource.setrlimit(resource.RLIMIT_AS, (soft, limits[1]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fixtures = root / "fixtures"
        train = ["train", "--data-dir", "{tiny}", "--hidden", "8", "--dropout", "0.5", "--batch-size", "50",
                 "--val-size", "100", "--epochs", "1", "--threads", "1", "--no-verify"]  # fmt: skip
        for name, extra, code in (("finished", [], 0), ("diverged", ["--model", "plain", "--lr", "1e30"], 3)):
            o = invoke([*train, *extra, "--out", str(fixtures / name)])
            assert o.exc is None and o.code == code, (o.exc, o.code, o.err, o.out)
            tokens[f"{{{name}}}"] = str(fixtures / name)
        unfinished = fixtures / "unfinished"
        shutil.copytree(fixtures / "finished", unfinished)
        for f in ("summary.json", "model.pt", "metrics.csv", "curves.png"):
            (unfinished / f).unlink(missing_ok=True)
        tokens["{unfinished}"] = str(unfinished)
        for name, text in (("damagedrun", "{not json"), ("emptyconfig", "{}")):
            shutil.copytree(unfinished, fixtures / name)
            (fixtures / name / "config.json").write_text(text)
            tokens[f"{{{name}}}"] = str(fixtures / name)
        study = root / "studies" / "headline"
        o = invoke(["study", "headline", "--quick", "--seeds", "2", "--data-dir", "{tiny}", "--no-verify",
                    "--val-size", "100", "--out", str(study), "--store", str(store)])  # fmt: skip
        assert o.exc is None and o.code == 0, (o.exc, o.code, o.err)
        tokens |= {"{study}": str(study), "{studies}": str(study.parent), "{store}": str(store)}
        good = json.loads((study / "study.json").read_text())
        bad = {
            "garbage": "\x00{[not json",
            "null": "null",
            "list": "[1, 2]",
            "types": json.dumps({"study": 1, "title": 2, "claims": 3, "tables": 4, "figures": 5}),
            "claims": json.dumps({**good, "claims": [{**good["claims"][0], "outcome": "<b>maybe</b>"}],
                                  "figures": ["../../../../etc/x.png"]}),  # fmt: skip
            "oldclaims": json.dumps({**good, "claims": [{"line": "claim: x — supported", "verdict": "supported"}]}),
            "nanclaims": json.dumps({**good, "claims": [{**c, "p": math.nan, "per_seed": [1e400]}
                                                        for c in good["claims"]]}, allow_nan=True),  # fmt: skip
            "tables": json.dumps({**good, "tables": [{"title": "t", "headers": None, "rows": 1}]}),
        }
        for name, text in bad.items():
            d = root / "badstudies" / name
            d.mkdir(parents=True)
            (d / "study.json").write_text(text)
            tokens[f"{{bad-{name}}}"] = str(d)
        # a suite's directory (a good study beside its suite.json) whose suite.json is damaged
        suite = root / "badsuite"
        shutil.copytree(study, suite / "headline", ignore=shutil.ignore_patterns("runs"))
        (suite / "suite.json").write_text(json.dumps({"studies": ["headline"], "claims": [
            {**good["claims"][0], "study": "headline", "also_in": None}]}))  # fmt: skip
        tokens["{bad-suite}"] = str(suite)
        tokens["{badstudies}"] = str(root / "badstudies")
        yield WORLD
    finally:
        torch.set_num_threads(threads)
        resource.setrlimit(resource.RLIMIT_AS, limits)
        WORLD = None


# --- the fuzzers -------------------------------------------------------------------------


@settings(FUZZ, max_examples=100)
@given(change=changes(TRAIN))
def test_fuzz_train_options(change):
    """One to three options of a tiny `droplab train` given hostile values."""
    argv = _argv(["train"], _with(TINY | {"--out": ["out"]}, change))
    fuzz(argv, option=next(iter(change)) if len(change) == 1 else None)


HOSTILE = HUGE_INTS + NEG_INTS + FLOAT_HOSTILE + ["1_000", "١٢", "１２", " 1", "+1", "1e", "0x10", "", "--", "\udcff"]
ONE_OPTION = (
    [("train", o) for o in sorted(TRAIN)]
    + [("compare", "--seeds")]
    + [("study", o) for o in sorted(STUDY)]
    + [("check", o) for o in sorted(CHECK)]
)


@settings(FUZZ, max_examples=120)
@given(where=st.sampled_from(ONE_OPTION), value=st.sampled_from(HOSTILE))
def test_fuzz_one_hostile_value(where, value):
    """One numeric option of a working command set to an overflow, a huge or negative integer, or
    a number Python reads but people may not (1_000, Arabic-Indic or full-width digits)."""
    command, option = where
    change = {option: [value]}
    if command == "train":
        argv = _argv(["train"], _with(TINY | {"--out": ["out"]}, change))
    elif command == "compare":
        argv = _argv(["compare"], _with(TINY | {"--seeds": ["1"], "--out": ["cmp"]}, change))
    elif command == "study":
        argv = _argv(["study", "headline"], STUDY_BASE | change, flags=("--quick", "--no-verify"))
    else:
        argv = _argv(["check"], {"--draws": ["1000"]} | change, flags=())
    fuzz(argv, option=option)


@settings(FUZZ, max_examples=30)
@given(
    option=st.sampled_from(["--out", "--runs-root", "--data-dir", "--out+--runs-root"]),
    path=st.sampled_from(OUT_PATHS),
    data=st.sampled_from(DATA_DIRS),
    write=st.sampled_from(WRITE_PATHS),
)
def test_fuzz_train_paths(option, path, data, write):
    """Output and data paths: long, deep, odd unicode, system paths, files, '.', '..'."""
    options = dict(TINY)
    if option == "--out":
        options["--out"] = [path]
    elif option == "--runs-root":
        options["--runs-root"] = [write]
    elif option == "--data-dir":
        options |= {"--data-dir": [data], "--out": ["out"]}
    else:
        options |= {"--out": [path], "--runs-root": [write]}
    fuzz(_argv(["train"], options))


@settings(FUZZ, max_examples=60)
@given(
    run=st.sampled_from(RUN_DIRS),
    extra=st.one_of(st.just({}), changes(TRAIN, most=2), st.sampled_from([{"--threads": ["2"]}, {"--out": ["o"]},
                                                                            {"--recipe": ["best"]}])),  # fmt: skip
    data=st.sampled_from(["{tiny}", "{tiny}", "{notest}", "{garbage}", "nonexistent"]),
)
def test_fuzz_resume(run, extra, data):
    """--resume of finished, unfinished, diverged, damaged and odd run directories, alone or with
    options that cannot come with it."""
    argv = _argv(["train", "--resume", run, "--data-dir", data], extra)
    fuzz(argv)


@settings(FUZZ, max_examples=10)
@given(change=changes(COMPARE, most=2))
def test_fuzz_compare_options(change):
    base = TINY | {"--seeds": ["1"], "--out": ["cmp"]}
    fuzz(_argv(["compare"], _with(base, change)), option=next(iter(change)) if len(change) == 1 else None)


STUDY_BASE = {
    "--seeds": ["1"], "--data-dir": ["{tiny}"], "--val-size": ["100"], "--out": ["study"], "--store": ["{store}"],
}  # fmt: skip


@settings(FUZZ, max_examples=30)
@given(
    name=st.one_of(st.just("headline"), st.just("headline"), st.just("list"), choices("headline", "layer-rates")),
    change=st.one_of(st.just({}), changes(STUDY, most=2)),
    paths=st.one_of(
        st.just({}),
        st.builds(lambda p: {"--out": [p]}, st.sampled_from(OUT_PATHS)),
        st.builds(lambda p: {"--store": [p]}, st.sampled_from(WRITE_PATHS)),
        st.builds(lambda p: {"--data-dir": [p]}, st.sampled_from(DATA_DIRS)),
    ),
)
def test_fuzz_study(name, change, paths):
    """`droplab study NAME --quick` with hostile names, seeds, epochs, threads, sizes and paths."""
    argv = _argv(["study", name], STUDY_BASE | change | paths, flags=("--quick", "--no-verify"))
    single = next(iter(change)) if len(change) == 1 and not paths and name == "headline" else None
    fuzz(argv, option=single)


@settings(FUZZ, max_examples=100)
@given(change=changes(CHECK, most=2))
def test_fuzz_check(change):
    single = next(iter(change)) if len(change) == 1 else None
    fuzz(_argv(["check"], {"--draws": ["1000"]} | change, flags=()), option=single)


REPORT_DIRS = ["{study}", "{studies}", "{badstudies}", "{tiny}", "{finished}", "{store}"] + [
    f"{{bad-{n}}}" for n in ("garbage", "null", "list", "types", "claims", "oldclaims", "nanclaims", "tables", "suite")
] + ["/", "/proc/self", "/dev/null", ".", "", "nonexistent", "afile", "empty", "full", LONG, "\udcff"]


@settings(FUZZ, max_examples=100)
@given(
    dirs=st.lists(st.sampled_from(REPORT_DIRS), min_size=1, max_size=3),
    output=st.one_of(
        st.just("report.html"), st.sampled_from(WRITE_PATHS), st.sampled_from(WRITE_PATHS).map(lambda p: p + ".html")
    ),
)
def test_fuzz_report(dirs, output):
    """`droplab report DIR... -o FILE`: damaged studies, odd directories, odd output files."""
    fuzz(["report", *dirs, "-o", output])


@pytest.mark.parametrize("name, message", [
    ("claims", "claims[0].outcome: got a string; expected 'supported' or 'contradicted' or 'equivalent' or "),
    ("oldclaims", "claims[0].outcome: missing; expected one of four outcomes (this claim has an earlier droplab's"),
    ("nanclaims", "claims[0].p: nan; expected a finite number >= 0"),
    ("suite", "suite.json: claims[0].also_in: got null; expected an array of strings"),
])  # fmt: skip
def test_a_damaged_study_or_suite_file_exits_2_naming_the_field(name, message):
    o = check(invoke(["report", f"{{bad-{name}}}", "-o", "r.html"]))
    assert o.code == 2 and message in o.err, o.err


COMMANDS = {
    "train": _argv(["train"], TINY | {"--out": ["out"]}),
    "compare": _argv(["compare"], TINY | {"--seeds": ["1"], "--out": ["out"]}),
    "study": _argv(["study", "headline"], STUDY_BASE, flags=("--quick", "--no-verify")),
    "check": ["check", "--draws", "1000"],
    "report": ["report", "{study}", "-o", "r.html"],
}
ALL_OPTIONS = sorted(
    set(TRAIN) | set(COMPARE) | set(STUDY) | set(CHECK)
    | {"--out", "--runs-root", "--data-dir", "--resume", "--store", "--quick", "--no-verify", "-o", "--output",
       "--help", "-h", "--version", "--lr=1e308", "--lea", "--l", "--o", "--hid", "-", "--"}
)  # fmt: skip
ANY_VALUE = st.one_of(
    st.sampled_from(HUGE_INTS + NEG_INTS + FLOAT_HOSTILE + MALFORMED + PATHS + ["{tiny}", "{finished}", "{study}"]),
    ODD_TEXT,
)


@settings(FUZZ, max_examples=100)
@given(
    command=st.one_of(st.sampled_from(sorted(COMMANDS)), st.just(None)),
    tail=st.lists(st.one_of(st.sampled_from(ALL_OPTIONS), ANY_VALUE), max_size=6),
)
def test_fuzz_combinations(command, tail):
    """A working command with options of any command appended (later ones win), wrong types,
    values without options and options without values; or no command at all."""
    argv = (COMMANDS[command] if command else []) + tail
    fuzz(argv)


# --- known cases -------------------------------------------------------------------------


def _tiny_train(*extra: str) -> list[str]:
    return _argv(["train"], TINY) + list(extra)


@pytest.mark.parametrize("option", ["--lr", "--weight-decay"])
def test_float_overflow_is_refused_or_diverges_cleanly(option):
    """--lr 1e308 used to end in 'value cannot be converted to type float without overflow'."""
    o = invoke(_tiny_train(option, "1e308", "--out", "run"), keep=True)
    try:
        check(o)
        assert o.code in (2, 3), f"exit {o.code}: {o.err}"
        run = o.cwd / "run"
        if o.code == 2:
            assert option in o.err, o.err
            assert not run.exists() or not any(p.name != ".droplab" for p in run.iterdir()), list(run.iterdir())
        else:
            assert "diverged" in o.err, o.err
            files = {p.name for p in run.iterdir()}
            assert files - {"config.json", ".droplab"}, f"the run directory holds only {files}"
    finally:
        shutil.rmtree(o.cwd.parent.parent, ignore_errors=True)


def test_300_character_out_is_refused_naming_the_length():
    o = check(invoke(_tiny_train("--out", LONG)))
    assert o.code == 2, o.err
    assert "too long" in o.err.lower(), o.err


def test_val_size_beyond_the_data_names_the_option():
    o = check(invoke(_tiny_train("--val-size", "60000", "--out", "run")))
    assert o.code == 2, o.err
    assert "--val-size" in o.err, o.err


def test_zero_test_images_is_an_error_not_a_traceback():
    o = check(invoke(_argv(["train"], TINY | {"--data-dir": ["{notest}"], "--out": ["run"]})))
    assert o.code in (1, 2), o.err
    assert "test" in o.err.lower(), o.err


def test_huge_hidden_layers_are_refused_before_training():
    """2 x 10^6 hidden units: 4 TB of weights; refused for the memory they need, not tried."""
    o = check(invoke(_argv(["train"], TINY | {"--hidden": ["1000000", "1000000"], "--dropout": ["0.5", "0.5"],
                                              "--out": ["run"]})))  # fmt: skip
    assert o.code == 2, o.err
    assert "memory" in o.err.lower(), o.err


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))


def test_a_million_seeds_returns_quickly(tmp_path):
    """study --seeds 1000000 is 2 million runs (and 4 tuning runs): say so and stop, not compute 2 million keys."""
    COUNT["invocations"] += 1
    tiny = WORLD.tokens["{tiny}"]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "droplab", "study", "headline", "--quick", "--seeds", "1000000", "--data-dir", tiny,
         "--no-verify", "--val-size", "100", "--out", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory, cwd=tmp_path,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 2, (proc.returncode, seconds, proc.stderr[-2000:])
    assert re.search(r"2[,_ \u202f]?000[,_ \u202f]?00\d runs", proc.stderr), proc.stderr  # and the tuning runs


# --- the count ---------------------------------------------------------------------------


def test_zz_invocation_count():
    """Last in the file: the fuzzers ran at least 500 invocations (derandomized: the same ones each run)."""
    n = COUNT["invocations"]
    print(f"droplab CLI fuzz: {n} invocations")
    if os.environ.get("DROPLAB_FUZZ_COUNT_FILE"):
        Path(os.environ["DROPLAB_FUZZ_COUNT_FILE"]).write_text(f"{n}\n")
    assert n >= 500, f"only {n} invocations"


# found by a full sweep of the value lists, beyond the fixed example set above
SWEEP_CASES = [
    (["check", "--draws", str(2**63)], "--draws"),
    (["check", "--draws", str(2**63 - 1)], "--draws"),
    (["check", "--draws", "1000", "--seed", str(2**64)], "--seed"),
    (_tiny_train("--threads", str(2**31), "--out", "run"), None),
    (_tiny_train("--split-seed", str(2**64), "--out", "run"), "--split-seed"),
    (_tiny_train("--hidden", "9" * 400, "--dropout", "0.5", "--out", "run"), "--hidden"),
    (_argv(["train"], {"--resume": [LONG]}), "--resume"),
    (_argv(["train"], TINY | {"--data-dir": [LONG], "--out": ["run"]}), None),
    (_argv(["study", "headline"], STUDY_BASE | {"--store": ["/proc/self"]}, flags=("--quick", "--no-verify")), None),
]


@pytest.mark.parametrize("argv, option", SWEEP_CASES, ids=[" ".join(a[:3]) + f" #{i}" for i, (a, _) in
                                                          enumerate(SWEEP_CASES)])  # fmt: skip
def test_sweep_found_cases_end_with_a_message(argv, option):
    o = check(invoke(argv))
    assert o.code in (0, 1, 2), o.err
    if option is not None:
        assert o.code == 2 and option in o.err, o.err
