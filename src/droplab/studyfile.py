"""``study.json`` as the report reads it: the fields the page shows, checked and normalised.

A study directory may come from anyone, so its ``study.json`` is untrusted input: :func:`validate`
checks every field the report shows (types, finite numbers, valid Unicode) and says which field is
wrong and why; the other fields are not looked at. Each claim is checked whole, with every field
the issue's study.json section lists (:func:`claim`), as is a suite's ``suite.json``
(:func:`validate_suite`: the distinct claims of ``droplab study all``).
"""

from __future__ import annotations

import math
import re

__all__ = ["FieldError", "OUTCOMES", "validate", "validate_suite", "claim"]

OUTCOMES = ("supported", "contradicted", "equivalent", "inconclusive")  # as droplab.stats.OUTCOMES
KINDS = ("superiority", "equivalence", "noninferiority")

_JSON_TYPES = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
               list: "an array", dict: "an object"}  # fmt: skip


def _kind(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # nan, inf: json.loads reads NaN and Infinity
    return _JSON_TYPES.get(type(value), type(value).__name__)


class FieldError(ValueError):
    """``field`` of a study.json holds ``value`` (or is missing): not ``expected``."""

    def __init__(self, field: str, expected: str, value=None, missing: bool = False) -> None:
        super().__init__(field, expected, value, missing)
        self.field, self.expected, self.value, self.missing = field, expected, value, missing

    def __str__(self) -> str:
        got = "missing" if self.missing else f"got {_kind(self.value)}"
        return f"{self.field}: {got}; expected {self.expected}"


def _string(value, field: str) -> str:
    if not isinstance(value, str):
        raise FieldError(field, "a string", value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldError(field, "a string of valid Unicode (no lone surrogates)", value) from None
    return value


def _finite(value, field: str, minimum: float | None = None) -> float:
    expected = "a finite number" + (f" >= {minimum:g}" if minimum is not None else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(field, expected, value)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or (minimum is not None and number < minimum):
        raise ValueError(f"{field}: {value!r:.40}; expected {expected}")
    return number


def _integer(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(field, "an integer", value)
    return value


def _list(value, field: str, what: str) -> list:
    if not isinstance(value, list):
        raise FieldError(field, f"an array of {what}", value)
    return value


def _object(value, field: str, what: str) -> dict:
    if not isinstance(value, dict):
        raise FieldError(field, what, value)
    return value


def _get(obj: dict, key: str, field: str, expected: str):
    if key not in obj:
        raise FieldError(field, expected, missing=True)
    return obj[key]


def _cell(value, field: str) -> str:
    if isinstance(value, str):
        return _string(value, field)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _finite(value, field)
        return str(value)
    raise FieldError(field, "a string or a finite number", value)


def validate(raw) -> dict:
    """The fields of ``raw`` (a parsed study.json) that the report shows, checked and normalised.

    Raises:
        ValueError: the first field that is missing or not what it must be (:class:`FieldError`
            names the field, what it holds and what it must hold).

    Examples::

        >>> validate({"study": "s", "title": "t", "claims": [], "tables": [], "figures": [], "runs": 4})["runs"]
        4
        >>> validate({"study": "s", "title": 7, "claims": [], "tables": [], "figures": []})
        Traceback (most recent call last):
        ...
        droplab.studyfile.FieldError: title: got a number; expected a string
    """
    s = _object(raw, "the top level", "an object (a droplab study)")
    for key in ("study", "title", "claims", "tables", "figures"):
        if key not in s:
            raise ValueError(f"not a droplab study (no {key!r})")
    study = {
        "study": _string(s["study"], "study"),
        "title": _string(s["title"], "title"),
        "question": _string(s.get("question", ""), "question"),
        "seeds": [_integer(v, f"seeds[{i}]") for i, v in enumerate(_list(s.get("seeds", []), "seeds", "integers"))],
        "quick": s.get("quick", False),
        "runs": _integer(s["runs"], "runs") if "runs" in s else None,
        "train_seconds": _finite(s.get("train_seconds", 0), "train_seconds", minimum=0),
        "notes": [_string(v, f"notes[{i}]") for i, v in enumerate(_list(s.get("notes", []), "notes", "strings"))],
        "figures": [_string(v, f"figures[{i}]") for i, v in enumerate(_list(s["figures"], "figures", "strings"))],
        "claims": [],
        "tables": [],
    }
    if not isinstance(study["quick"], bool):
        raise FieldError("quick", "a boolean", study["quick"])
    if study["runs"] is not None and study["runs"] < 0:
        raise ValueError(f"runs: {study['runs']}; expected an integer >= 0")
    study["claims"] = [claim(c, f"claims[{i}]") for i, c in enumerate(_list(s["claims"], "claims", "objects"))]
    expected = "an object with 'title', 'headers' and 'rows'"
    for i, t in enumerate(_list(s["tables"], "tables", "objects")):
        f = f"tables[{i}]"
        t = _object(t, f, expected)
        title = _string(_get(t, "title", f"{f}.title", "a string"), f"{f}.title")
        headers = _list(_get(t, "headers", f"{f}.headers", "an array of strings"), f"{f}.headers", "strings")
        rows = _list(_get(t, "rows", f"{f}.rows", "an array of arrays"), f"{f}.rows", "arrays")
        study["tables"].append({
            "title": title,
            "headers": [_string(h, f"{f}.headers[{j}]") for j, h in enumerate(headers)],
            "rows": [
                [_cell(v, f"{f}.rows[{j}][{k}]") for k, v in enumerate(_list(row, f"{f}.rows[{j}]", "cells"))]
                for j, row in enumerate(rows)
            ],
        })  # fmt: skip
    return study


def _choice(value, field: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise FieldError(field, " or ".join(repr(c) for c in choices), value)
    return value


def _boolean(value, field: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(field, "a boolean", value)
    return value


def _optional(value, field: str, minimum: float | None = None, maximum: float | None = None) -> float | None:
    """A finite number in [minimum, maximum], or null (a figure that could not be computed)."""
    if value is None:
        return None
    number = _finite(value, field, minimum)
    if maximum is not None and number > maximum:
        raise ValueError(f"{field}: {value!r:.40}; expected a number from {minimum:g} to {maximum:g} or null")
    return number


def claim(raw, field: str) -> dict:
    """A claim record (:meth:`droplab.verdicts.Claim.record`) checked: every field of the issue's
    list, its line stating its outcome, as many per-seed values as seeds.

    Examples::

        >>> claim({"text": "t"}, "claims[0]")
        Traceback (most recent call last):
        ...
        droplab.studyfile.FieldError: claims[0].primary: missing; expected a boolean
    """
    c = _object(raw, field, "an object (a claim)")
    if "verdict" in c and "outcome" not in c:  # droplab before its claims had four outcomes
        raise FieldError(f"{field}.outcome", "one of four outcomes (this claim has an earlier droplab's 'verdict': "
                         "run its study again)", missing=True)  # fmt: skip
    get = lambda key, expected: _get(c, key, f"{field}.{key}", expected)  # noqa: E731
    f = lambda key: f"{field}.{key}"  # noqa: E731
    out = {
        "text": _string(get("text", "a string"), f("text")),
        "primary": _boolean(get("primary", "a boolean"), f("primary")),
        "kind": _choice(get("kind", "a kind"), f("kind"), KINDS),
        "margin": _finite(get("margin", "a number"), f("margin"), minimum=0),
        "estimate": _finite(get("estimate", "a number"), f("estimate")),
        "p": _optional(get("p", "a p-value"), f("p"), 0, 1),
        "p_adjusted": _optional(get("p_adjusted", "a p-value"), f("p_adjusted"), 0, 1),
        "mde": _optional(get("mde", "a number"), f("mde"), 0),
        "outcome": _choice(get("outcome", "an outcome"), f("outcome"), OUTCOMES),
        "regime": _string(get("regime", "a string"), f("regime")),
        "seeds": _integer(get("seeds", "an integer"), f("seeds")),
        "line": _string(get("line", "a string"), f("line")),
        "identity": _string(get("identity", "a string"), f("identity")),
    }
    bounds = _list(get("interval", "an array"), f("interval"), "two numbers or nulls")
    if len(bounds) != 2:
        raise ValueError(f"{f('interval')}: {len(bounds)} values; expected [low, high]")
    out["interval"] = [_optional(v, f"{f('interval')}[{j}]") for j, v in enumerate(bounds)]
    per_seed = _list(get("per_seed", "an array"), f("per_seed"), "numbers")
    out["per_seed"] = [_finite(v, f"{f('per_seed')}[{j}]") for j, v in enumerate(per_seed)]
    if out["margin"] == 0:
        raise ValueError(f"{f('margin')}: 0; expected a finite number > 0")
    if out["seeds"] < 1 or len(per_seed) != out["seeds"]:
        raise ValueError(f"{f('seeds')}: {out['seeds']} with {len(per_seed)} per-seed values; expected an integer "
                         ">= 1, the number of per-seed values")  # fmt: skip
    if None not in out["interval"] and out["interval"][0] > out["interval"][1]:
        raise ValueError(f"{f('interval')}: {out['interval']}; expected [low, high] with low <= high")
    if not re.fullmatch(r"[0-9a-f]{16}", out["identity"]):
        raise ValueError(f"{f('identity')}: {out['identity']!r:.40}; expected 16 hexadecimal digits")
    if f" — {out['outcome']}" not in out["line"]:
        raise ValueError(f"{f('line')}: does not state the claim's outcome ({out['outcome']}); "
                         f"expected a line ending in ' — {out['outcome']}' and its regime")  # fmt: skip
    return out


def validate_suite(raw) -> dict:
    """A parsed ``suite.json`` checked: its studies, and its distinct claims, each a :func:`claim`
    with the ``study`` that made it and the studies that repeat it (``also_in``).

    Examples::

        >>> validate_suite({"studies": ["headline"], "claims": []})
        {'studies': ['headline'], 'claims': []}
        >>> validate_suite({"studies": "headline", "claims": []})
        Traceback (most recent call last):
        ...
        droplab.studyfile.FieldError: studies: got a string; expected an array of strings
    """
    s = _object(raw, "the top level", "an object (a droplab suite)")
    studies = _list(_get(s, "studies", "studies", "an array of strings"), "studies", "strings")
    out = {"studies": [_string(v, f"studies[{i}]") for i, v in enumerate(studies)], "claims": []}
    for i, c in enumerate(_list(_get(s, "claims", "claims", "an array of objects"), "claims", "objects")):
        record = claim(c, f"claims[{i}]")
        record["study"] = _string(_get(c, "study", f"claims[{i}].study", "a string"), f"claims[{i}].study")
        also = _list(_get(c, "also_in", f"claims[{i}].also_in", "an array"), f"claims[{i}].also_in", "strings")
        record["also_in"] = [_string(v, f"claims[{i}].also_in[{j}]") for j, v in enumerate(also)]
        out["claims"].append(record)
    return out
