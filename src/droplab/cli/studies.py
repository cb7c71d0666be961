"""``droplab study`` (a study of the lecture's claims, or all of them) and ``droplab report`` (one HTML page)."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from rich.console import Console

from ..progress import StudyProgress
from .backend import add_backend_options, backend_from_args
from .errors import UsageError, flag
from .options import add_options, check_options

__all__ = ["add_parsers", "cmd_study", "cmd_report"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    study = sub.add_parser("study", help="run a study of the lecture's claims (NAME, all, or list)")
    study.add_argument("name", help="a study name, 'all' for every study, 'list' to list them")
    study.add_argument("--seeds", type=int, default=None,
                       help="confirmation seeds per configuration (default: the study's, sized for its margins)")
    study.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the study's)")
    study.add_argument("--plan", action="store_true",
                       help="print the runs and about how long they take, train nothing")
    study.add_argument("--protocol", choices=("fair", "lecture"), default="fair",
                       help="fair (default): each variant's learning rate tuned on tuning seeds, the epoch chosen on "
                            "validation, fresh seeds scored once on the test set; lecture: the study's fixed learning "
                            "rate and epochs, scored at the last epoch")
    study.add_argument("--tune-seeds", type=int, default=2,
                       help="tuning seeds per (configuration, learning rate) under the fair protocol (default: 2)")
    study.add_argument("--lr-grid", default=None, metavar="LR,LR,...",
                       help="learning rates tuned over under the fair protocol (default: the study's, "
                            "e.g. 0.03,0.1,0.3)")
    study.add_argument("--widen", type=int, default=2,
                       help="under the fair protocol, at most this many rates tried past an end of the grid that "
                            "won, one step of the grid's own ratio at a time (default: 2; 0: the grid only)")
    study.add_argument("--quick", action="store_true", help="a tiny setting (2 epochs, 2,000 images) for tests and CI")
    add_backend_options(study, retired_jobs=True)  # --backend, --address, --cpus-per-run
    study.add_argument("--out", default=None,
                       help="output directory (default: results/NAME; for 'all': results/, one directory per study "
                            "and the runs they share in results/runs); an interrupted study resumes there")
    study.add_argument("--store", default=None,
                       help="where finished runs are kept and looked up (default: OUT/runs); studies sharing a "
                            "store share identical runs")
    add_options(study, "study")  # those it shares with train: --val-size, --data-dir, --no-verify
    study.add_argument("--max-runs", type=int, default=10_000,
                       help="refuse a study of more runs than this (default: %(default)s); the plan, with its "
                            "estimated time, is printed before the runs start")
    study.set_defaults(func=cmd_study)

    report = sub.add_parser("report", help="one self-contained HTML page from study directories")
    report.add_argument("dirs", nargs="+", metavar="DIR", help="study directories (or directories holding them)")
    report.add_argument("-o", "--output", default="report.html", help="the HTML file (default: report.html)")
    report.set_defaults(func=cmd_report)


def cmd_study(args: argparse.Namespace, console: Console) -> int:
    from ..studies import STUDIES

    if args.name == "list":
        for name, st in STUDIES.items():
            alone = "" if st.in_all else "  (not in 'all': run it by name)"
            console.print(f"{name:20s} {st.title}{alone}", markup=False, soft_wrap=True)
        return 0
    names = [n for n, s in STUDIES.items() if s.in_all] if args.name == "all" else [args.name]
    if names[0] not in STUDIES:
        raise UsageError(f"study {args.name!r}: unknown, expected one of all, list, {', '.join(STUDIES)}")
    # --seeds and --epochs: run_study checks them (StudyArgumentError, below), before any work
    check_options(args)
    if args.max_runs < 1:
        raise UsageError(f"--max-runs {args.max_runs}: invalid, expected an integer >= 1")
    protocol = _protocol(args)
    root = Path(args.out) if args.out else Path("results") / ("" if args.name == "all" else args.name)
    total, reports = time.perf_counter(), []
    backend = backend_from_args(args, console)
    try:
        for name in names:
            reports.append(_one_study(name, names, root, protocol, backend, args, console))
    finally:
        backend.close()
    if args.plan:
        from ..studies.plan import format_seconds

        console.print(f"{sum(r['runs'] for r in reports)} runs, about "
                      f"{format_seconds(sum(r['seconds'] for r in reports))} of training in all; nothing was trained")
    elif len(names) > 1:
        _print_suite(root, reports, time.perf_counter() - total, console)
    return 0


def _one_study(name: str, names: list[str], root: Path, protocol, backend, args: argparse.Namespace,
               console: Console) -> dict:  # fmt: skip
    """Run study ``name`` (one of ``names``) and print what it found; its report."""
    from ..studies import STUDIES, StudyArgumentError, run_study
    from ..studies.plan import PlanError

    out = root / name if args.name == "all" else root
    store = args.store or (root / "runs" if args.name == "all" else None)
    start = time.perf_counter()
    try:
        with StudyProgress(name) as progress:
            report = run_study(
                STUDIES[name], args.data_dir, out, seeds=args.seeds, epochs=args.epochs, quick=args.quick,
                backend=backend, store=store, verify=not args.no_verify, val_size=args.val_size,
                max_runs=args.max_runs, log=lambda line: console.print(line, markup=False, soft_wrap=True),
                protocol=protocol, plan_only=args.plan, progress=progress,
            )  # fmt: skip
    except StudyArgumentError as err:  # the library's check of its arguments, in the options' words
        raise UsageError(f"{flag(err.name)} {err.value}: invalid, expected {err.expected}") from None
    except PlanError as err:
        raise UsageError(f"--seeds {err.seeds}: {err}; ask for fewer seeds (or --tune-seeds), or raise --max-runs "
                         "if you mean it")  # fmt: skip
    if args.plan:
        return report
    console.print(f"\n{report['title']}", markup=False, soft_wrap=True)
    if len(names) == 1:
        for claim in report["claims"]:
            console.print(claim["line"], markup=False, soft_wrap=True)
    else:  # each distinct claim is printed once, at the end, with the suite's correction
        counts = Counter(c["outcome"] for c in report["claims"])
        tally = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        console.print(f"{len(report['claims'])} claims: {tally}", markup=False, soft_wrap=True)
    console.print(f"{name}: {time.perf_counter() - start:.0f} s wall; results in {out}/ (study.json, summary.md, "
                  f"{', '.join(report['figures'])})\n", markup=False, soft_wrap=True)  # fmt: skip
    return report


def _protocol(args: argparse.Namespace):
    """The protocol the options ask for; UsageError for a bad --tune-seeds, --lr-grid or --widen."""
    from ..studies.protocol import Protocol, ProtocolError

    grid = None
    if args.lr_grid is not None:
        try:
            grid = tuple(float(x) for x in args.lr_grid.split(","))
        except ValueError:
            raise UsageError(f"--lr-grid {args.lr_grid!r}: invalid, expected learning rates separated by commas, "
                             "e.g. 0.03,0.1,0.3") from None  # fmt: skip
    try:
        return Protocol(args.protocol, args.tune_seeds, grid, args.widen)
    except ProtocolError as err:
        raise UsageError(f"{flag(err.field)} {err.value}: invalid, expected {err.expected}") from None


def _print_suite(root: Path, reports: list, seconds: float, console: Console) -> None:
    """Each distinct claim of the suite once, with the suite's verdicts; suite.json and suite.md in ``root``."""
    from ..studies.suite import write_suite

    s = write_suite(root, reports, seconds)
    say = lambda line: console.print(line, markup=False, soft_wrap=True)  # noqa: E731
    say(f"the suite: {len(s['claims'])} distinct claims ({s['repeated']} repeated from identical runs, counted once); "
        f"{s['primaries']} primary claims corrected across the suite (Benjamini-Hochberg after Holm within each study)")
    study = None
    for r in s["claims"]:
        if r["study"] != study:
            study = r["study"]
            say(f"\n{study}:")
        say(("primary " if r["primary"] else "") + r["line"])
    say("\noutcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(s["outcomes"].items())))
    say(f"all {len(reports)} studies: {seconds:.0f} s wall; the suite in {root}/suite.md")


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from ..report import NoStudyFound, ReportError, write_report

    try:
        path = write_report(args.dirs, args.output)
    except NoStudyFound as err:
        raise UsageError(f"{err} (run `droplab study` first)") from None
    except ReportError as err:
        raise UsageError(str(err)) from None
    console.print(f"report: {path}", markup=False, soft_wrap=True)
    return 0
