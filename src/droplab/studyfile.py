"""``study.json`` as the report reads it: the fields the page shows, checked and normalised.

A study directory may come from anyone, so its ``study.json`` is untrusted input: :func:`validate`
checks every field the report shows (types, finite numbers, valid Unicode) and says which field is
wrong and why; the other fields are not looked at.
"""

from __future__ import annotations

import math

__all__ = ["FieldError", "validate"]

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
    expected = "an object with 'line' and 'verdict' strings"
    for i, c in enumerate(_list(s["claims"], "claims", "objects")):
        c = _object(c, f"claims[{i}]", expected)
        study["claims"].append({
            key: _string(_get(c, key, f"claims[{i}].{key}", "a string"), f"claims[{i}].{key}")
            for key in ("line", "verdict")
        })  # fmt: skip
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
