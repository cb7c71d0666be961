"""A suite of studies read as one: each distinct claim once, the primary claims corrected across the suite.

Studies share runs (one store), so two studies can make the same claim from identical runs: the
same runs and the same statistic (:attr:`~droplab.verdicts.Claim.identity`). The suite keeps
its first making, in the studies' order, and names the others. Each study has corrected its
claims' p-values for their number (Holm, both tests of every claim in one family); the suite's
primary claims, one per study, are corrected again across the suite (Benjamini–Hochberg on the
studies' adjusted p-values of both their tests: a primary claim must survive both), and their
outcomes read from that. A primary's MDE stays its study's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from .. import atomic
from ..verdicts import Claim, adjust

__all__ = ["suite", "write_suite", "suite_markdown"]


def suite(reports: Sequence[dict]) -> dict:
    """The distinct claims of ``reports`` (``study.json`` contents, in the studies' order).

    Returns:
        ``{"claims": [claim record + "study", "also_in"], "primaries": n, "repeated": n,
        "outcomes": {outcome: count}}``; primary claims carry the suite's adjusted p-values.
    """
    first: dict[str, dict] = {}
    for rep in reports:
        for rec in rep["claims"]:
            if rec["identity"] in first:
                first[rec["identity"]]["also_in"].append(rep["study"])
            else:
                first[rec["identity"]] = {**rec, "study": rep["study"], "also_in": []}
    records = list(first.values())
    primaries = [i for i, r in enumerate(records) if r["primary"]]
    # the MDE keeps the study's family: the suite's correction is of the false discovery rate
    corrected = adjust([Claim.from_record(records[i]) for i in primaries], "bh", family=0)
    for i, c in zip(primaries, corrected):
        c = dataclasses.replace(c, family=records[i]["family"])
        records[i] = {**c.record(), "study": records[i]["study"], "also_in": records[i]["also_in"],
                      "family_suite": len(primaries)}  # fmt: skip
    outcomes: dict[str, int] = {}
    for r in records:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    repeated = sum(len(r["also_in"]) for r in records)
    return {"claims": records, "primaries": len(primaries), "repeated": repeated, "outcomes": outcomes}


def suite_markdown(s: dict, seconds: float | None = None, trained: int | None = None, read: int | None = None) -> str:
    """``suite.md``: the distinct claims, by study, with the suite's verdicts; ``seconds`` the wall
    time of the call that wrote it, which trained ``trained`` of the ``read`` runs its studies read."""
    lines = ["# The suite's claims, each made once", ""]
    wall = f" Wall time of the call that wrote this file: {seconds / 60:.1f} min" if seconds else ""
    if wall and trained is not None:
        wall += f"; it trained {trained} runs, and its studies read {read} (the rest came from the store)"
    lines += [f"{len(s['claims'])} distinct claims ({s['repeated']} repeated by other studies from identical runs, "
              f"counted once); {s['primaries']} primary claims, corrected across the suite (Benjamini–Hochberg "
              "after Holm within each study)." + (wall + "." if wall else ""), ""]
    lines += ["Outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(s["outcomes"].items())), ""]
    study = None
    for r in s["claims"]:
        if r["study"] != study:
            study = r["study"]
            lines += ["", f"## {study}", ""]
        also = f" (also in {', '.join(r['also_in'])})" if r["also_in"] else ""
        lines.append(f"- {'**primary** ' if r['primary'] else ''}`{r['line']}`{also}")
    return "\n".join(lines) + "\n"


def write_suite(root: Path, reports: Sequence[dict], seconds: float | None = None) -> dict:
    """Write ``root/suite.json`` and ``root/suite.md`` (atomically) and return the suite."""
    s = suite(reports)
    atomic.write_json(Path(root) / "suite.json", {**s, "studies": [r["study"] for r in reports], "seconds": seconds})
    trained, read = (sum(r.get(k, 0) for r in reports) for k in ("runs_trained", "runs"))
    atomic.write_text(Path(root) / "suite.md", suite_markdown(s, seconds, trained, read))
    return s
