"""One self-contained HTML page from study directories: claims, tables and plots.

Everything is inside the file (styles inline, plots as base64 PNG data URIs), so the page
opens in a browser with no network and can be mailed or archived as one file.

Each claim is shown with its outcome (supported, contradicted, equivalent, inconclusive) in its
colour. The page counts *distinct* claims: two studies that make a claim from identical runs
(the same ``identity``) make it once, counted where it is made first, in the page's order. A
directory that ``droplab study all`` wrote holds ``suite.json`` beside its studies: there the
primary claims carry the suite's outcomes (Benjamini–Hochberg across the suite's primaries, after
Holm within each study), which the page shows and counts. The suite is computed where it is
written (:mod:`droplab.studies.suite`, from the claims' own tests), not here: this module is below
the studies and reads what they wrote; without a ``suite.json`` each outcome is its study's own.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import stat
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import __version__, atomic
from .studyfile import OUTCOMES, validate, validate_suite

__all__ = ["ReportError", "NoStudyFound", "find_studies", "find_suites", "render", "write_report"]

OUTCOME_COLORS = {"supported": "#1a7f37", "contradicted": "#cf222e", "equivalent": "#0969da",
                  "inconclusive": "#9a6700"}  # fmt: skip

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 0;
background: #f6f8fa; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 28px; margin: 8px 0 4px; } h2 { font-size: 21px; margin: 40px 0 4px; border-top: 1px solid #d0d7de;
padding-top: 24px; } .meta { color: #59636e; font-size: 13px; } .question { font-style: italic; color: #31373d; }
nav ol { columns: 2; font-size: 14px; } .claims { list-style: none; padding: 0; margin: 12px 0; }
.claims li { font: 13px/1.5 ui-monospace, SFMono-Regular, Menlo, monospace; padding: 3px 8px; margin: 2px 0;
border-left: 4px solid; background: #f6f8fa; } .verdict { font-weight: 600; } .repeat { color: #59636e; }
table { border-collapse: collapse; margin: 12px 0; font-size: 13px; } caption { text-align: left; font-weight: 600;
padding: 4px 0; } th, td { border-bottom: 1px solid #d0d7de; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f6f8fa; }
figure { margin: 12px 0; } img { max-width: min(100%, 1040px); border: 1px solid #eaeef2; }
.summary td:nth-child(n+2), .summary th { text-align: left; } .notes { font-size: 14px; }
"""


class ReportError(ValueError):
    """No study to report at ``path``, or a file there that cannot be read or written: ``problem`` says why."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(path, problem)
        self.path, self.problem = Path(path), problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class NoStudyFound(ReportError):
    """``path`` holds no ``study.json``, neither in it nor in its subdirectories."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path, "no study.json in it or in its subdirectories")
        self.args = (path,)  # its own arguments: what pickle gives back to it


STUDY_JSON_CAP = 64 << 20  # bytes of study.json read at most (real ones are well under 5 MB)
FIGURE_CAP = 10 << 20  # bytes of one figure embedded at most
FIGURES_TOTAL_CAP = 100 << 20  # bytes of figures embedded in one page at most
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _study_file(directory: Path) -> os.stat_result | None:
    """The stat of ``directory/study.json`` when it is a regular file (symlinks followed), else None."""
    st = _stat(directory / "study.json")
    return st if st is not None and stat.S_ISREG(st.st_mode) else None


def find_studies(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Study directories (holding ``study.json``) among ``paths`` and their subdirectories."""
    found: list[Path] = []
    for p in map(Path, paths):
        st = _stat(p)
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise ReportError(p, "not a directory")
        if _study_file(p) is not None:
            found.append(p)
            continue
        if _stat(p / "study.json") is not None:
            raise ReportError(p / "study.json", "not a regular file; expected the study's JSON file")
        try:
            entries = sorted(p.iterdir())
        except OSError as err:
            raise ReportError(p, f"cannot be listed: {err.strerror or err}") from None
        # in the order the studies were written (a suite writes them in the catalog's order);
        # entries that are not directories holding a regular study.json (unreadable, odd) are skipped
        subs = [(st.st_mtime, d.name, d) for d in entries if (st := _study_file(d)) is not None]
        if not subs:
            raise NoStudyFound(p)
        found += [d for _, _, d in sorted(subs, key=lambda t: t[:2])]
    return found


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


def _read(path: Path, what: str, check) -> dict:
    """``path`` (a JSON file of up to ``STUDY_JSON_CAP`` bytes) read and checked by ``check``."""
    try:
        text = atomic.read_regular(path, STUDY_JSON_CAP, what).decode("utf-8")
        raw = json.loads(text)
    except OSError as err:
        raise ReportError(path, f"cannot be read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ReportError(path, f"cannot be read: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except RecursionError:
        raise ReportError(path, "cannot be read: nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, and the size and file-type refusals
        raise ReportError(path, f"cannot be read: {err}") from None
    try:
        return check(raw)
    except ValueError as err:  # the fields the page shows, not what they must be
        raise ReportError(path, str(err)) from None


def _load(directory: Path) -> dict:
    return _read(directory / "study.json", "the study's JSON file", validate)


def find_suites(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The ``suite.json`` files (regular files) of those ``paths`` that are not themselves a study."""
    found = []
    for p in map(Path, paths):
        st = _stat(p / "suite.json")
        if _study_file(p) is None and st is not None and stat.S_ISREG(st.st_mode):
            found.append(p / "suite.json")
    return found


def _distinct(studies: list[tuple[Path, dict]], suites: Iterable[dict]) -> tuple[list[list[tuple[dict, str]]], dict]:
    """Per study, its claims as the page shows them, each with the study that made it first on
    the page ("" if this one: the making counted); a claim a suite counted in this study is shown
    as the suite records it (a primary: with the suite's outcome).

    Returns:
        the claims per study, and ``{"outcomes": {outcome: distinct claims}, "repeated": n,
        "suite": primary claims shown with a suite's outcome}``.
    """
    by_suite = {(r["study"], r["identity"]): r for s in suites for r in s["claims"]}
    first: dict[str, str] = {}
    tally = {"outcomes": dict.fromkeys(OUTCOMES, 0), "repeated": 0, "suite": 0}
    shown = []
    for _, s in studies:
        rows = []
        for c in s["claims"]:
            if (s["study"], c["identity"]) in by_suite:
                c = by_suite[s["study"], c["identity"]]
                tally["suite"] += c["primary"]
            repeat = first.get(c["identity"], "")
            if repeat:
                tally["repeated"] += 1
            else:
                first[c["identity"]] = s["study"]
                tally["outcomes"][c["outcome"]] += 1
            rows.append((c, repeat))
        shown.append(rows)
    return shown, tally


# --- the page ------------------------------------------------------------------------------


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _anchor(name: str, taken: set[str]) -> str:
    """An id for study ``name``: the name itself when it is a plain identifier, else a slug of it
    (letters, digits, ``-``, ``_``, ``.``); never one already in ``taken``."""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,79}", name):
        base = name
    else:
        base = "study-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:80] or "unnamed")
    anchor, n = base, 1
    while anchor in taken:
        n += 1
        anchor = f"{base}-{n}"
    taken.add(anchor)
    return anchor


def _not_embedded(name: str, reason: str) -> str:
    return f"<p class='meta'>figure {_e(name)} not embedded: {_e(reason)}</p>"


def _figure_bytes(directory: Path, name: str) -> bytes | str:
    """The PNG bytes of figure ``name`` of the study in ``directory``, or why it is not embedded."""
    if not name or "\0" in name or os.path.isabs(name):
        return "not a file name inside the study directory"
    try:
        root = directory.resolve(strict=True)
        path = (directory / name).resolve(strict=True)  # symlinks followed, then checked
    except FileNotFoundError:
        return "missing"
    except (OSError, RuntimeError, ValueError) as err:
        return f"cannot be read ({getattr(err, 'strerror', None) or err})"
    if not path.is_relative_to(root):
        return "outside the study directory"
    try:
        data = atomic.read_regular(path, FIGURE_CAP, "a PNG file")
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    except ValueError as err:
        return str(err)
    if not data.startswith(PNG_SIGNATURE):
        return "not a PNG"
    return data


def _image(directory: Path, name: str, budget: list[int]) -> str:
    data = _figure_bytes(directory, name)
    if isinstance(data, str):
        return _not_embedded(name, data)
    if len(data) > budget[0]:
        return _not_embedded(name, f"the page already embeds {_size(FIGURES_TOTAL_CAP)} of figures, its cap")
    budget[0] -= len(data)
    alt = Path(name).stem
    return f"<figure><img alt='{_e(alt)}' src='data:image/png;base64,{base64.b64encode(data).decode()}'></figure>"


def _claim(c: dict, repeat: str) -> str:
    """One claim's line, its outcome word in its colour (from the record's ``outcome``, never
    the line's text); a repeat names the study it is counted in."""
    color = OUTCOME_COLORS[c["outcome"]]  # validated: one of the four
    head, _, tail = c["line"].rpartition(f" — {c['outcome']}")
    styled = f"<span class='verdict' style='color:{color}'>{_e(c['outcome'])}</span>"
    primary = "<b>primary</b> " if c["primary"] else ""
    note = f" <span class='repeat'>(made from identical runs in {_e(repeat)}: counted once, there)</span>" \
        if repeat else ""  # fmt: skip
    return f"<li style='border-color:{color}'>{primary}{_e(head)} — {styled}{_e(tail)}{note}</li>"


def _table(t: dict) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in t["headers"])
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in t["rows"])
    return f"<table><caption>{_e(t['title'])}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(directory: Path, s: dict, claims: list[tuple[dict, str]], anchor: str, budget: list[int]) -> str:
    quick = " · quick setting" if s["quick"] else ""
    runs = "?" if s["runs"] is None else str(s["runs"])
    parts = [
        f"<h2 id='{_e(anchor)}'>{_e(s['title'])}</h2>",
        f"<p class='meta'>droplab study {_e(s['study'])} · {len(s['seeds'])} seeds · "
        f"{_e(runs)} runs · {_e(format(s['train_seconds'], '.0f'))} s of training{quick}</p>",
        f"<p class='question'>{_e(s['question'])}</p>",
        "<ul class='claims'>" + "".join(_claim(c, repeat) for c, repeat in claims) + "</ul>",
    ]
    parts += [_table(t) for t in s["tables"]]
    if s["notes"]:
        parts.append("<ul class='notes'>" + "".join(f"<li>{_e(n)}</li>" for n in s["notes"]) + "</ul>")
    parts += [_image(directory, f, budget) for f in s["figures"]]
    return "\n".join(parts)


def _counts(outcomes: Iterable[str]) -> str:
    """``"2 supported, 1 equivalent"``: the outcomes that occur, in the legend's order."""
    outcomes = list(outcomes)
    return ", ".join(f"{outcomes.count(o)} {o}" for o in OUTCOMES if o in outcomes) or "none"


LEGEND = (
    "<p>Each claim states its margin δ, declared with the claim before any run, and a 95% interval of its "
    "difference. A claim is <b style='color:#1a7f37'>supported</b> when the difference is shown on the claimed "
    "side of 0; <b style='color:#cf222e'>contradicted</b> when it is shown on the other side (an equivalence "
    "claim: shown beyond ±δ); <b style='color:#0969da'>equivalent</b> when it is shown within ±δ (two one-sided "
    "tests, TOST); <b style='color:#9a6700'>inconclusive</b> otherwise. The adjusted p-values decide (Holm "
    "within each study; Benjamini–Hochberg across a suite's primary claims, after Holm); the interval shown "
    "is unadjusted. MDE: the smallest effect the design detects at 80% power.</p>"
)


def render(directories: Iterable[Path], title: str = "droplab report", suites: Iterable[Path] = ()) -> str:
    """The HTML page for the study ``directories`` (with the outcomes of the ``suites``' ``suite.json``).

    Each ``study.json`` and ``suite.json`` is untrusted input: it is read up to a size cap, checked
    against the fields the page shows (:class:`ReportError` names the file and the field), and
    every string is escaped. A figure is embedded only when it is a PNG file inside its study's
    directory, under a size cap; otherwise the page says why it is not.
    """
    studies = [(Path(d), _load(Path(d))) for d in directories]
    suite = [_read(Path(p), "the suite's JSON file", validate_suite) for p in suites]
    shown, tally = _distinct(studies, suite)
    taken: set[str] = set()
    anchors = [_anchor(s["study"], taken) for _, s in studies]
    rows = "".join(
        f"<tr><td><a href='#{_e(a)}'>{_e(s['study'])}</a></td><td>{_e(s['title'])}</td>"
        f"<td>{_e(_counts(c['outcome'] for c, _ in claims))}</td></tr>"
        for a, (_, s), claims in zip(anchors, studies, shown)
    )
    distinct = sum(tally["outcomes"].values())
    counted = (f"{distinct} distinct claims ({tally['repeated']} repeated from identical runs, counted once): "
               + (", ".join(f"{n} {o}" for o, n in tally["outcomes"].items() if n) or "none"))  # fmt: skip
    across = (f"{tally['suite']} primary claims with the suite's outcomes (suite.json)" if tally["suite"] else
              "each outcome its study's own (no suite.json: primary claims not corrected across studies)")  # fmt: skip
    budget = [FIGURES_TOTAL_CAP]
    sections = "".join(_section(d, s, c, a, budget) for a, (d, s), c in zip(anchors, studies, shown))
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body><main>"
        f"<h1>{_e(title)}</h1><p class='meta'>droplab {_e(__version__)} · {time.strftime('%Y-%m-%d %H:%M')} · "
        f"{len(studies)} studies · {_e(counted)} · {_e(across)}</p>{LEGEND}"
        f"<table class='summary'><thead><tr><th>study</th><th>question</th><th>outcomes</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{sections}</main></body></html>\n"
    )


def write_report(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Find the studies under ``paths`` and write the page to ``out`` (atomically)."""
    out = Path(out)
    expected = "the path of an HTML file to write, in an existing directory"
    if (st := _stat(out)) is not None and not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise ReportError(out, f"{kind}; expected {expected}")
    parent = out.parent
    if (st := _stat(parent)) is None or not stat.S_ISDIR(st.st_mode):
        raise ReportError(out, f"{parent} is not an existing directory; expected {expected}")
    studies = find_studies(paths)
    suites = find_suites(paths)
    inputs = {(d / "study.json").resolve() for d in studies} | {p.resolve() for d in studies for p in d.glob("*.png")}
    if out.resolve() in inputs | {p.resolve() for p in suites}:
        raise ReportError(out, f"is one of the studies' own files; expected {expected} elsewhere")
    page = render(studies, suites=suites)
    try:
        return atomic.write_text(out, page)
    except OSError as err:
        raise ReportError(out, f"cannot be written: {err.strerror or err}; expected {expected}") from None
