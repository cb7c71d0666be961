import csv
import json
import subprocess
import sys

import pytest

from droplab.cli import UsageError, main

TINY = ["--hidden", "32", "16", "--batch-size", "50", "--val-size", "100", "--no-verify"]


def run_cli(args, capsys):
    try:
        code = main(args)
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def test_check_prints_the_quick_check_and_passes(capsys):
    code, out, _ = run_cli(["check", "--draws", "200000"], capsys)
    assert code == 0
    assert "dropout(X, p=0.0)" in out and "dropout(X, p=1.0)" in out
    assert "[ 8.,  9., 10., 11., 12., 13., 14., 15.]" in out  # p = 0 leaves X as it is
    assert "E[h']/h" in out and "all within bounds" in out and "FAIL" not in out
    assert "dropout_reference (the lecture's code" in out and "droplab's fast kernel" in out
    assert out.count("│ reference │") == 3 and out.count("│ fast      │") == 3


def test_train_one_epoch_writes_a_complete_run(tiny_dir, tmp_path):
    """The console entry point, as a user runs it, in a subprocess."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "droplab", "train", "--epochs", "1", "--data-dir", str(tiny_dir),
         "--out", str(out), *TINY],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"run directory: {out}" in proc.stdout and "test acc" in proc.stdout
    assert proc.stderr == ""  # no progress bar off a terminal
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.csv", "summary.json", "curves.png", "model.pt"} <= files
    assert not [f for f in files if ".tmp-" in f]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert list(rows[0]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"] and len(rows) == 1
    summary = json.loads((out / "summary.json").read_text())
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "seconds"):
        assert isinstance(summary[key], float), key
    assert summary["seed"] == 0 and "torch" in summary["versions"]
    assert json.loads((out / "config.json").read_text())["hidden"] == [32, 16]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_second_run_into_same_directory_refuses(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--epochs", "1", "--data-dir", str(tiny_dir), "--out", str(out), *TINY]
    assert run_cli(args, capsys)[0] == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "already holds results" in err
    assert "(choose a new --out, or leave --out unset for a fresh timestamped directory)" in err  # the CLI's words
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_a_refused_study_directory_names_the_option_to_change(tiny_dir, tmp_path, capsys):
    """The library's directory errors name no option; the CLI adds what to do, in its options' words."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    owned = tmp_path / "owned"
    owned.mkdir()
    (owned / ".droplab-study").write_text("ensemble\n")
    common = ["--quick", "--seeds", "1", "--data-dir", str(tiny_dir), "--no-verify", "--val-size", "100"]
    code, _, err = run_cli(["study", "headline", "--out", str(other), *common], capsys)
    assert code == 2 and "already holds results" in err and err.rstrip().endswith(": choose another --out")
    code, _, err = run_cli(["study", "headline", "--out", str(owned), *common], capsys)
    assert code == 2 and "holds results of study 'ensemble'" in err and err.rstrip().endswith(": choose another --out")
    assert (other / "notes.txt").read_text() == "mine" and sorted(p.name for p in owned.iterdir()) == [".droplab-study"]
    code, _, err = run_cli(["report", str(tmp_path / "other"), "-o", str(tmp_path / "r.html")], capsys)
    assert code == 2 and "no study.json" in err and "(run `droplab study` first)" in err


def test_default_run_directories_are_fresh(tiny_dir, tmp_path, capsys):
    root = tmp_path / "runs"
    args = ["train", "--epochs", "1", "--data-dir", str(tiny_dir), "--runs-root", str(root), *TINY]
    assert run_cli(args, capsys)[0] == 0 and run_cli(args, capsys)[0] == 0
    runs = sorted(p.name for p in root.iterdir())
    assert len(runs) == 2 and all(r.startswith("scratch-") for r in runs)


def test_same_seed_and_threads_give_identical_files(tiny_dir, tmp_path, capsys):
    import torch

    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        args = ["train", "--epochs", "2", "--seed", "5", "--threads", "1", "--data-dir", str(tiny_dir),
                "--out", str(out), *TINY]  # fmt: skip
        assert run_cli(args, capsys)[0] == 0
    a, b = ((o / "metrics.csv").read_bytes() for o in outs)
    assert a == b
    wa, wb = (torch.load(o / "model.pt", weights_only=True) for o in outs)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_reference_dropout_impl_one_flag_away(tiny_dir, tmp_path, capsys):
    out = tmp_path / "ref"
    args = ["train", "--dropout-impl", "reference", "--epochs", "1", "--data-dir", str(tiny_dir),
            "--out", str(out), *TINY]  # fmt: skip
    assert run_cli(args, capsys)[0] == 0
    assert json.loads((out / "config.json").read_text())["dropout_impl"] == "reference"


def test_plain_records_no_dropout(tiny_dir, tmp_path, capsys):
    out = tmp_path / "plain"
    args = ["train", "--model", "plain", "--epochs", "1", "--data-dir", str(tiny_dir), "--out", str(out), *TINY]
    assert run_cli(args, capsys)[0] == 0
    assert json.loads((out / "config.json").read_text())["dropout"] == [0.0, 0.0]


BAD = [
    (["--dropout", "1.5", "0.5"], "--dropout 1.5 0.5: invalid, expected probabilities in [0, 1]"),
    (["--dropout", "-0.1", "0.5"], "--dropout -0.1 0.5: invalid"),
    (["--dropout", "nan", "0.5"], "--dropout nan 0.5: invalid"),
    (["--dropout", "0.5"], "--dropout 0.5: invalid, expected one probability per hidden layer (2)"),
    (["--epochs", "0"], "--epochs 0: invalid, expected an integer from 1 to 100,000"),
    (["--epochs", "99999999999999999999"],
     "--epochs 99999999999999999999: invalid, expected an integer from 1 to 100,000"),
    (["--batch-size", "0"], "--batch-size 0: invalid, expected an integer >= 1"),
    (["--batch-size", "501"], "--batch-size 501: invalid, expected at most the 500 training images"),
    (["--hidden", "0", "16"], "--hidden 0 16: invalid, expected one or more layer widths"),
    (["--lr", "0"], "--lr 0.0: invalid, expected a number > 0 and at most 3.403e+38"),
    (["--lr", "1e308"], "--lr 1e+308: invalid, expected a number > 0 and at most 3.403e+38 (the largest float32)"),
    (["--weight-decay", "1e308"], "--weight-decay 1e+308: invalid, expected a number >= 0 and at most 3.403e+38"),
    (["--lr", "-1"], "--lr -1.0: invalid"),
    (["--lr", "inf"], "--lr inf: invalid"),
    (["--lr", "nan"], "--lr nan: invalid"),
    (["--momentum", "1"], "--momentum 1.0: invalid, expected a number in [0, 1)"),
    (["--weight-decay", "-0.1"], "--weight-decay -0.1: invalid"),
    (["--seed", "-1"], "--seed -1: invalid"),
    (["--val-size", "0"], "--val-size 0: invalid"),
    (["--val-size", "600"], "--val-size 600: invalid, expected an integer from 1 to 599 (the data in "),
    (["--threads", "0"], "--threads 0: invalid"),
    (["--checkpoint-every", "-1"], "--checkpoint-every -1: invalid, expected an integer >= 0"),
    (["--train-size", "40"], "--batch-size 50: invalid, expected at most the 40 training images"),
    (["--train-size", "600"], "--train-size 600: invalid, expected at most the 500 training images (0: all)"),
]


@pytest.mark.parametrize("extra, message", BAD)
def test_bad_options_exit_2_with_message_and_write_nothing(extra, message, tiny_dir, tmp_path, capsys):
    args = ["train", "--data-dir", str(tiny_dir), "--runs-root", str(tmp_path / "runs"), *TINY, *extra]
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--model", "big"], "invalid choice: 'big'"),
        (["train", "--epochs", "ten"], "invalid int value: 'ten'"),
        (["train", "--dropout-impl", "cuda"], "invalid choice: 'cuda'"),
        (["compare", "--seeds", "0"], "--seeds 0: invalid, expected an integer >= 1"),
        (["check", "--draws", "0"], "--draws 0: invalid"),
    ],
)
def test_other_bad_arguments(args, message, capsys, tmp_path):
    code, _, err = run_cli([*args, "--runs-root", str(tmp_path)] if args[0] != "check" else args, capsys)
    assert code == 2 and message in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resume", "/nonexistent/run"], "--resume /nonexistent/run: /nonexistent/run is not a droplab run"),
        (["--resume", "r", "--lr", "0.5"], "--resume r goes on with the run's own configuration; --lr cannot"),
        (["--resume", "r", "--out", "x"], "--out cannot be combined with it"),
        # typed at its default value, an option is still asked for: refused, not silently dropped
        (["--resume", "r", "--epochs", "10"], "--resume r goes on with the run's own configuration; --epochs cannot"),
        (["--resume", "r", "--select", "last"], "--select cannot be combined"),
        (["--resume", "r", "--runs-root", "runs"], "--runs-root cannot be combined"),
        (["--resume", "r", "--threads", "0"], "--threads 0: invalid, expected an integer >= 1"),
    ],
)
def test_bad_resume_arguments(args, message, capsys):
    code, _, err = run_cli(["train", *args], capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_resume_of_a_finished_run_or_a_damaged_checkpoint(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["train", "--epochs", "1", "--data-dir", str(tiny_dir), "--out", str(out), *TINY], capsys)[0] == 0
    code, _, err = run_cli(["train", "--resume", str(out), "--data-dir", str(tiny_dir), "--no-verify"], capsys)
    assert code == 2 and "holds a finished run: nothing to resume" in err
    (out / "summary.json").unlink()
    (out / "checkpoint.pt").write_bytes(b"droplab-checkpoint 1 " + b"0" * 64 + b"\nnot torch")
    code, _, err = run_cli(["train", "--resume", str(out), "--data-dir", str(tiny_dir), "--no-verify"], capsys)
    assert code == 1 and "checkpoint.pt is damaged: SHA-256 of its contents is" in err and "Traceback" not in err


def test_divergence_exits_3_and_says_what_to_do(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "plain", "--lr", "1e6", "--data-dir", str(tiny_dir), "--out", str(out), *TINY]
    code, _, err = run_cli(args, capsys)
    assert code == 3 and "training diverged at epoch 1, step" in err and "try a smaller learning rate than 1e+06" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["step"] >= 1


def test_a_comparison_whose_run_diverges_exits_3_and_writes_no_results(tiny_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--seeds", "1", "--lr", "1e6", "--data-dir", str(tiny_dir), "--out", str(out), *TINY]
    code, _, err = run_cli(args, capsys)
    assert code == 3 and "Traceback" not in err
    assert "training diverged at epoch 1, step" in err and "(plain, seed 0)" in err and "than 1e+06" in err
    assert not (out / "compare.json").exists() and not (out / "compare.md").exists()


def test_missing_data_says_how_to_get_it(tmp_path, capsys):
    code, _, err = run_cli(["train", "--data-dir", str(tmp_path / "none"), "--runs-root", str(tmp_path / "r")], capsys)
    assert code == 1 and "apt-get install dataset-fashion-mnist" in err and "--data-dir" in err
    assert not (tmp_path / "r").exists()


def test_corrupt_data_file_is_named(tiny_dir, tmp_path, capsys):
    (tiny_dir / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    code, _, err = run_cli(["train", "--data-dir", str(tiny_dir), *TINY], capsys)
    assert code == 1 and "t10k-labels-idx1-ubyte.gz: damaged gzip stream" in err


def test_compare_two_seeds_writes_json_figure_and_summary(tiny_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, _ = run_cli(
        ["compare", "--seeds", "2", "--epochs", "2", "--data-dir", str(tiny_dir), "--out", str(out), *TINY],
        capsys,
    )
    assert code == 0
    results = json.loads((out / "compare.json").read_text())
    assert set(results) == {"plain", "scratch", "concise"}
    for per_metric in results.values():
        for key in ("train_loss", "val_loss", "val_acc", "test_acc", "gap"):
            assert len(per_metric[key]) == 2
    assert (out / "compare.png").stat().st_size > 0
    md = (out / "compare.md").read_text()
    assert "| plain |" in md and "claim: scratch dropout raises val accuracy" in md
    assert "claim: concise dropout shrinks the val-train loss gap" in stdout
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]  # the study engine's store
    assert sorted((r["job"]["train"]["model"], r["job"]["train"]["seed"]) for r in records) == [
        (m, s) for m in ("concise", "plain", "scratch") for s in (0, 1)
    ]
    assert sorted(results["plain"]["val_acc"]) == sorted(r["summary"]["val_acc"] for r in records
                                                         if r["job"]["train"]["model"] == "plain")  # fmt: skip
    assert "[6/6] " in stdout and "± " in stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--recipe", "best", "--lr", "0.3"], "--recipe best sets the training options itself; --lr cannot"),
        (["--recipe", "best", "--hidden", "8"], "--hidden cannot be combined"),
        (["--recipe", "best", "--momentum", "0"], "--recipe best sets the training options itself; --momentum cannot"),
        (["--recipe", "bestest"], "--recipe bestest: recipe must be one of lecture, best, vit; got 'bestest'"),
        (["--augment", "9"], "--augment 9: invalid, expected an integer from 0 to 8"),
        (["--max-norm", "-1"], "--max-norm -1.0: invalid, expected a number >= 0 and at most 3.403e+38 (0: off)"),
        (["--train-size", "-1"], "--train-size -1: invalid, expected an integer >= 0"),
        (["--noise", "gaussian"], "--model scratch: invalid, expected mlp when noise or norm or input_dropout or "
                                  "activation is set"),
    ],
)
def test_recipe_and_model_option_errors(args, message, capsys):
    code, _, err = run_cli(["train", *args], capsys)
    assert code == 2 and message in err


def test_recipe_run_records_the_recipe_config(tiny_dir, tmp_path, capsys):
    out = tmp_path / "best"
    code, _, err = run_cli(["train", "--recipe", "best", "--epochs", "1", "--seed", "4", "--data-dir", str(tiny_dir),
                            "--no-verify", "--val-size", "100", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["hidden"], cfg["dropout"], cfg["epochs"], cfg["seed"]) == ([1024, 1024], [0.1, 0.3], 1, 4)
    out = tmp_path / "vit"
    code, _, err = run_cli(["train", "--recipe", "vit", "--epochs", "1", "--data-dir", str(tiny_dir), "--no-verify",
                            "--val-size", "100", "--select", "last", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    sites = [cfg[f"vit_{site}"] for site in ("attention_dropout", "projection_dropout", "mlp_dropout", "drop_path")]
    assert (cfg["model"], cfg["vit_width"], cfg["vit_depth"], sites, cfg["optimizer"], cfg["lr"]) == \
        ("vit", 64, 4, [0.1] * 4, "adam", 0.003)  # fmt: skip
    assert cfg["select"] == "last"  # an option the recipe leaves open, given


def test_threads_beyond_the_cores_are_capped_with_a_note_and_the_count_used_recorded(tiny_dir, tmp_path, capsys):
    from droplab.threads import usable_cores

    out = tmp_path / "run"
    code, stdout, err = run_cli(["train", "--epochs", "1", "--threads", "4096", "--data-dir", str(tiny_dir),
                                 "--out", str(out), *TINY], capsys)  # fmt: skip
    assert code == 0, err
    cores = usable_cores()
    assert f"note: threads 4096 capped at the {cores} core" in stdout and f"({cores} threads)" in stdout
    assert json.loads((out / "summary.json").read_text())["threads"] == cores
    assert json.loads((out / "config.json").read_text())["threads"] == cores


def test_resume_as_the_hint_says_finds_the_runs_own_data(tiny_dir, tmp_path, capsys):
    """`droplab train --resume DIR`, as printed after an interruption, with no --data-dir and no
    --no-verify: the run's recorded directory, checked against its recorded digest."""
    out = tmp_path / "run"
    args = ["train", "--epochs", "2", "--data-dir", str(tiny_dir), "--out", str(out), *TINY]
    assert run_cli(args, capsys)[0] == 0
    finished = (out / "metrics.csv").read_text()
    (out / "summary.json").write_text('{"status": "interrupted"}')  # as if stopped before its first checkpoint
    code, stdout, err = run_cli(["train", "--resume", str(out)], capsys)
    assert code == 0, err
    assert (out / "metrics.csv").read_text() == finished
    (out / "summary.json").write_text('{"status": "interrupted"}')
    from conftest import write_dataset

    other = write_dataset(tmp_path / "other", n_train=600, n_test=150)
    code, _, err = run_cli(["train", "--resume", str(out), "--data-dir", str(other)], capsys)
    assert code == 1 and "a run goes on only on the data it started on" in err


def _subparser(command):
    import argparse

    from droplab.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


@pytest.mark.parametrize("command", ["train", "compare"])
def test_the_configuration_options_are_the_config_fields(command):
    """A field of TrainConfig is an option of the commands its metadata names, with its default and
    type; nothing else says which options there are (a new field is one edit)."""
    import dataclasses

    from droplab.train import TrainConfig

    parser = _subparser(command)
    actions = {a.dest: a for a in parser._actions}
    for f in dataclasses.fields(TrainConfig):
        assert (f.name in actions) == (command in f.metadata["commands"]), f.name
        if f.name in actions:
            assert actions[f.name].default == (list(f.default) if isinstance(f.default, tuple) else f.default)
            assert actions[f.name].choices == f.metadata["choices"]
    args = parser.parse_args(["--hidden", "8", "4", "--dropout", "0.1", "0.2", "--lr", "0.5", "--epochs", "3"])
    assert (args.hidden, args.dropout, args.lr, args.epochs) == ([8, 4], [0.1, 0.2], 0.5, 3)


VIT_FIELDS = ("vit_patch", "vit_width", "vit_depth", "vit_heads", "vit_attention_dropout", "vit_projection_dropout",
              "vit_mlp_dropout", "vit_drop_path")  # fmt: skip


def test_what_a_recipe_fixes_and_resume_may_change_come_from_the_fields():
    import dataclasses

    from droplab.cli.options import config_from_args
    from droplab.train import TrainConfig

    fields = dataclasses.fields(TrainConfig)
    assert {f.name for f in fields if f.metadata["recipe"]} == {
        "model", "hidden", "dropout", "dropout_impl", "batch_size", "lr", "optimizer", "momentum", "weight_decay",
        "noise", "norm", "input_dropout", "activation", "max_norm", "train_size", "schedule", "augment",
        *VIT_FIELDS}  # fmt: skip
    assert {f.name for f in fields if f.metadata["run_only"]} == {"threads", "checkpoint_every"}
    assert {f.name for f in fields if f.metadata["mlp"]} == {"noise", "norm", "input_dropout", "activation"}
    assert {f.name for f in fields if f.metadata["vit"]} == set(VIT_FIELDS)
    from droplab.cli import build_parser

    args = build_parser().parse_args(["train", "--recipe", "best", "--seed", "3", "--epochs", "2",
                                      "--checkpoint-every", "5"])  # fmt: skip
    cfg = config_from_args(args)
    assert (cfg.hidden, cfg.seed, cfg.epochs, cfg.checkpoint_every, cfg.augment) == ((1024, 1024), 3, 2, 5, 1)


# --- the options derived from the configuration's fields ---------------------------------


def _typed(action, value) -> list[str]:
    """The arguments that give ``action``'s option ``value`` (None: none; the option left unset)."""
    import argparse

    if value is None or (action.nargs == 0 and value is False and action.const is True):  # unset, store_true
        return []
    if isinstance(action, argparse.BooleanOptionalAction):
        return [action.option_strings[0 if value else 1]]
    if action.nargs == 0:
        return [action.option_strings[0]]
    return [action.option_strings[0], *map(str, value if isinstance(value, list) else [value])]


def _round_trip(parser, head: list[str]) -> None:
    """Every option ``parser`` offers, typed with its own default, parses back to that default."""
    import argparse

    options = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    argv = [word for a in options for word in _typed(a, a.default)]
    from droplab.cli import build_parser

    args = build_parser().parse_args([*head, *argv])
    for a in options:
        assert getattr(args, a.dest) == a.default and type(getattr(args, a.dest)) is type(a.default), (a.dest, argv)


@pytest.mark.parametrize("command, head", [("train", ["train"]), ("compare", ["compare"]),
                                           ("study", ["study", "headline"])])  # fmt: skip
def test_every_option_parses_its_own_default_back(command, head):
    _round_trip(_subparser(command), head)


def _scratch_config():
    """A configuration with new fields, each declared once: a flag, a bounded integer, an optional
    one (typing.Optional as well as X | None) and a choice."""
    import typing
    from dataclasses import dataclass

    from droplab.train import TrainConfig
    from droplab.train import config as c

    @dataclass
    class Scratch(TrainConfig):
        warmup: bool = c._flag(False, "warm the learning rate up over the first epoch", commands=("train",))
        frozen: int = c._int(0, 0, 3, "an integer from 0 to 3", "hidden layers kept frozen", commands=("train",))
        prefetch: typing.Optional[int] = c._option(  # Optional[int], not int | None: both are read
            None, lambda v: v is None or (c._is_int(v) and v >= 1), "an integer >= 1", "batches to prefetch",
            commands=("train",),
        )  # fmt: skip
        style: str = c._choice("plain", ("plain", "fancy"), "how the table looks", commands=("train",))

    return Scratch


def test_a_new_field_is_one_edit(monkeypatch, capsys):
    """A field declared with its metadata is an option of the commands it names (its help, choices,
    default and type from the field) and reaches the configuration; nothing else is edited."""
    from droplab.cli import build_parser, options
    from droplab.cli.options import config_from_args

    scratch = _scratch_config()
    monkeypatch.setattr(options, "TrainConfig", scratch)
    actions = {a.dest: a for a in _subparser("train")._actions}
    warmup, frozen, prefetch, style = (actions[k] for k in ("warmup", "frozen", "prefetch", "style"))
    assert warmup.option_strings == ["--warmup", "--no-warmup"] and warmup.default is False
    assert warmup.help == "warm the learning rate up over the first epoch (default: False)"
    assert (frozen.type, frozen.default, frozen.help) == (int, 0, "hidden layers kept frozen (default: 0)")
    assert (prefetch.type, prefetch.default, prefetch.help) == (int, None, "batches to prefetch")
    assert (style.choices, style.default) == (("plain", "fancy"), "plain")
    assert not {"warmup", "frozen", "prefetch", "style"} & {a.dest for a in _subparser("compare")._actions}
    _round_trip(_subparser("train"), ["train"])

    parser = build_parser()
    cfg = config_from_args(parser.parse_args(["train", "--warmup", "--frozen", "2", "--prefetch", "4",
                                              "--style", "fancy"]))  # fmt: skip
    assert type(cfg) is scratch and (cfg.warmup, cfg.frozen, cfg.prefetch, cfg.style) == (True, 2, 4, "fancy")
    assert config_from_args(parser.parse_args(["train", "--no-warmup"])).warmup is False
    with pytest.raises(UsageError, match="--frozen 5: invalid, expected an integer from 0 to 3"):
        config_from_args(parser.parse_args(["train", "--frozen", "5"]))
    with pytest.raises(SystemExit):  # a flag takes no value: "--warmup False" is not read as true
        parser.parse_args(["train", "--warmup", "False"])
    assert "unrecognized arguments: False" in capsys.readouterr().err


def test_an_option_without_help_is_refused_where_it_is_declared():
    from droplab.train import config as c

    with pytest.raises(ValueError, match="offered as an option by train needs its help text"):
        c._flag(False, commands=("train",))
    with pytest.raises(ValueError, match="needs its help text"):
        c._int(0, 0, commands=("train", "compare"))
    assert c._flag(False).metadata["commands"] == ()  # no help: no option
    assert c._flag(False, "on").metadata["commands"] == ("train", "compare")


def _interrupted_run(tiny_dir, tmp_path, capsys):
    """A finished two-epoch run, its summary made an interrupted one's (as if stopped before its
    first checkpoint), and its metrics.csv."""
    out = tmp_path / "run"
    assert run_cli(["train", "--epochs", "2", "--data-dir", str(tiny_dir), "--out", str(out), *TINY], capsys)[0] == 0
    (out / "summary.json").write_text('{"status": "interrupted"}')
    return out, (out / "metrics.csv").read_text()


def test_resume_may_change_how_a_run_runs_not_what_it_computes(tiny_dir, tmp_path, capsys):
    """The run-only fields (threads, checkpoint_every) may come with --resume; the result is the same."""
    out, finished = _interrupted_run(tiny_dir, tmp_path, capsys)
    code, _, err = run_cli(["train", "--resume", str(out), "--checkpoint-every", "2", "--threads", "1"], capsys)
    assert code == 0, err
    assert (out / "metrics.csv").read_text() == finished
    code, _, err = run_cli(["train", "--resume", str(out), "--epochs", "3"], capsys)
    assert code == 2 and "--epochs cannot be combined with it (only --threads, --checkpoint-every, --data-dir" in err
    from droplab.train import resume

    with pytest.raises(ValueError, match="epochs cannot change"):
        resume(out, None, epochs=3)


def test_a_refusal_on_resume_names_no_option_the_user_did_not_type(tiny_dir, tmp_path, capsys, monkeypatch):
    """The memory a run needs, found short on --resume, is the run's configuration's fault, not a --hidden typed."""
    import droplab.train.resources as resources

    out, _ = _interrupted_run(tiny_dir, tmp_path, capsys)
    monkeypatch.setattr(resources, "available_bytes", lambda: 1 << 10)
    code, _, err = run_cli(["train", "--resume", str(out)], capsys)
    assert code == 2 and "hidden = (32, 16) is invalid: expected layers this machine's memory holds" in err
    assert "--hidden" not in err
    code, _, err = run_cli(["train", "--epochs", "1", "--data-dir", str(tiny_dir), "--runs-root", str(tmp_path / "r"),
                            *TINY], capsys)  # fmt: skip
    assert code == 2 and "--hidden 32 16: invalid, expected layers this machine's memory holds" in err


def test_study_shares_the_data_options_with_train():
    from droplab.train import TrainConfig

    train, study = ({a.dest: a for a in _subparser(command)._actions} for command in ("train", "study"))
    for dest in ("val_size", "data_dir", "no_verify"):
        assert (study[dest].default, study[dest].help, study[dest].type) == \
               (train[dest].default, train[dest].help, train[dest].type), dest  # fmt: skip
    assert study["val_size"].default == TrainConfig().val_size


@pytest.mark.parametrize("option, value, message", [
    ("--seeds", "0", "--seeds 0: invalid, expected an integer >= 1"),  # run_study's own check, in flag words
    ("--epochs", "0", "--epochs 0: invalid, expected an integer >= 1"),
    ("--cpus-per-run", "-2", "--cpus-per-run -2: invalid, expected an integer >= 1"),
    ("--max-runs", "0", "--max-runs 0: invalid, expected an integer >= 1"),
    ("--val-size", "0", "--val-size 0: invalid, expected an integer >= 1"),  # TrainConfig.val_size's metadata
])  # fmt: skip
def test_bad_study_arguments_name_the_option_before_any_work(option, value, message, tmp_path, capsys):
    out = tmp_path / "study"
    code, _, err = run_cli(["study", "headline", "--quick", "--out", str(out), "--data-dir", str(tmp_path / "none"),
                            option, value], capsys)  # fmt: skip
    assert code == 2 and f"droplab study: error: {message}" in err and "Traceback" not in err
    assert not out.exists()
