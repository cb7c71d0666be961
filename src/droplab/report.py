"""One self-contained HTML page from study directories: verdicts, tables and plots.

Everything is inside the file (styles inline, plots as base64 PNG data URIs), so the page
opens in a browser with no network and can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import __version__, rundir

__all__ = ["ReportError", "find_studies", "render", "write_report"]

VERDICT_COLORS = {"supported": "#1a7f37", "not supported": "#cf222e", "inconclusive": "#9a6700"}

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 0;
background: #f6f8fa; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 28px; margin: 8px 0 4px; } h2 { font-size: 21px; margin: 40px 0 4px; border-top: 1px solid #d0d7de;
padding-top: 24px; } .meta { color: #59636e; font-size: 13px; } .question { font-style: italic; color: #31373d; }
nav ol { columns: 2; font-size: 14px; } .claims { list-style: none; padding: 0; margin: 12px 0; }
.claims li { font: 13px/1.5 ui-monospace, SFMono-Regular, Menlo, monospace; padding: 3px 8px; margin: 2px 0;
border-left: 4px solid; background: #f6f8fa; } .verdict { font-weight: 600; }
table { border-collapse: collapse; margin: 12px 0; font-size: 13px; } caption { text-align: left; font-weight: 600;
padding: 4px 0; } th, td { border-bottom: 1px solid #d0d7de; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f6f8fa; }
figure { margin: 12px 0; } img { max-width: min(100%, 1040px); border: 1px solid #eaeef2; }
.summary td:nth-child(n+2), .summary th { text-align: left; } .notes { font-size: 14px; }
"""


class ReportError(ValueError):
    """No study to report, or a study directory that cannot be read."""


def find_studies(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Study directories (holding ``study.json``) among ``paths`` and their subdirectories."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise ReportError(f"{p}: not a directory")
        if (p / "study.json").is_file():
            found.append(p)
        else:
            # in the order the studies were written (a suite writes them in the catalog's order)
            subs = sorted((d for d in p.iterdir() if (d / "study.json").is_file()),
                          key=lambda d: ((d / "study.json").stat().st_mtime, d.name))  # fmt: skip
            if not subs:
                raise ReportError(f"{p}: no study.json in it or in its subdirectories (run `droplab study` first)")
            found += subs
    return found


def _load(directory: Path) -> dict:
    try:
        study = json.loads((directory / "study.json").read_text())
    except (OSError, ValueError) as err:
        raise ReportError(f"{directory / 'study.json'}: cannot be read: {err}") from None
    for key in ("study", "title", "claims", "tables", "figures"):
        if key not in study:
            raise ReportError(f"{directory / 'study.json'}: not a droplab study (no {key!r})")
    return study


def _e(text) -> str:
    return html.escape(str(text))


def _image(path: Path) -> str:
    try:
        data = base64.b64encode(path.read_bytes()).decode()
    except OSError:
        return f"<p class='meta'>missing plot: {_e(path.name)}</p>"
    return f"<figure><img alt='{_e(path.stem)}' src='data:image/png;base64,{data}'></figure>"


def _claim(c: dict) -> str:
    color = VERDICT_COLORS.get(c["verdict"], "#59636e")
    head, _, verdict = c["line"].rpartition(" — ")
    styled = f"<span class='verdict' style='color:{color}'>{_e(verdict)}</span>"
    return f"<li style='border-color:{color}'>{_e(head)} — {styled}</li>"


def _table(t: dict) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in t["headers"])
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in t["rows"])
    return f"<table><caption>{_e(t['title'])}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(directory: Path, s: dict) -> str:
    quick = " · quick setting" if s.get("quick") else ""
    parts = [
        f"<h2 id='{_e(s['study'])}'>{_e(s['title'])}</h2>",
        f"<p class='meta'>droplab study {_e(s['study'])} · {len(s.get('seeds', []))} seeds · "
        f"{s.get('runs', '?')} runs · {s.get('train_seconds', 0):.0f} s of training{quick}</p>",
        f"<p class='question'>{_e(s.get('question', ''))}</p>",
        "<ul class='claims'>" + "".join(_claim(c) for c in s["claims"]) + "</ul>",
    ]
    parts += [_table(t) for t in s["tables"]]
    if s.get("notes"):
        parts.append("<ul class='notes'>" + "".join(f"<li>{_e(n)}</li>" for n in s["notes"]) + "</ul>")
    parts += [_image(directory / f) for f in s["figures"]]
    return "\n".join(parts)


def render(directories: Iterable[Path], title: str = "droplab report") -> str:
    """The HTML page for the study ``directories``."""
    studies = [(d, _load(d)) for d in directories]
    counts: dict[str, int] = {}
    for _, s in studies:
        for c in s["claims"]:
            counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
    rows = "".join(
        f"<tr><td><a href='#{_e(s['study'])}'>{_e(s['study'])}</a></td><td>{_e(s['title'])}</td>"
        f"<td>{sum(c['verdict'] == 'supported' for c in s['claims'])} / {len(s['claims'])}</td></tr>"
        for _, s in studies
    )
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body><main>"
        f"<h1>{_e(title)}</h1><p class='meta'>droplab {_e(__version__)} · {time.strftime('%Y-%m-%d %H:%M')} · "
        f"{len(studies)} studies · claims: {_e(tally)}</p>"
        "<p>Every figure is a mean over seeds with a 95% t interval; comparisons are paired by seed. A claim is "
        "<b style='color:#1a7f37'>supported</b> when its interval lies on the claimed side of 0, "
        "<b style='color:#cf222e'>not supported</b> when it lies on the other, "
        "<b style='color:#9a6700'>inconclusive</b> when it straddles 0.</p>"
        f"<table class='summary'><thead><tr><th>study</th><th>question</th><th>claims supported</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>" + "".join(_section(d, s) for d, s in studies) + "</main></body></html>\n"
    )


def write_report(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Find the studies under ``paths`` and write the page to ``out`` (atomically)."""
    return rundir.write_text(out, render(find_studies(paths)))
