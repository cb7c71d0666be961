"""The report treats ``study.json`` and the files it names as untrusted input.

One real study is run once for the module; every test works on copies of its directory.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import shutil
import signal
import stat
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import write_dataset
from test_cli import run_cli

from droplab import atomic, report
from droplab.report import ReportError, find_studies, render, write_report
from droplab.studies import STUDIES, run_study

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def real_study(tmp_path_factory) -> Path:
    """A quick headline study (2 seeds) on tiny generated data: its study.json and figures."""
    root = tmp_path_factory.mktemp("report-study")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DROPLAB_DATA", raising=False)
        mp.setenv("XDG_CACHE_HOME", str(root / "xdg-cache"))
        run_study(STUDIES["headline"], write_dataset(root / "tiny"), root / "h", seeds=2, quick=True, verify=False,
                  val_size=100, log=lambda line: None)  # fmt: skip
    return root / "h"


def copy_study(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ["study.json", *json.loads((src / "study.json").read_text())["figures"]]:
        shutil.copyfile(src / name, dst / name)
    return dst


@contextmanager
def time_limit(seconds: float):
    """Fail (TimeoutError) instead of hanging, e.g. on a FIFO opened for reading."""

    def expire(signum, frame):
        raise TimeoutError(f"no answer in {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --- what a safe page looks like ------------------------------------------------------------

TAGS = {"html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "p", "b", "a", "table", "caption",
        "thead", "tbody", "tr", "th", "td", "ul", "li", "span", "figure", "img"}  # fmt: skip
ATTRS = {"lang", "charset", "name", "content", "class", "id", "href", "style", "alt", "src"}
SAFE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
SAFE_STYLE = re.compile(r"(border-)?color:#[0-9a-f]{6}")


class Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.data_in_style = ""
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.data_in_style += data


def check_page(page: str, real_uris: set[str]) -> None:
    """Only the page's own tags and attributes, safe ids and links, and only the study's own PNGs."""
    page.encode("utf-8")  # writable as UTF-8 (no lone surrogates)
    embedded = 0
    for i, uri in enumerate(sorted(real_uris)):  # the study's own PNGs; then no other data URI may be left
        embedded += page.count(uri)
        page = page.replace(uri, f"data:real-png-{i}")
    assert not re.search(r"data:(?!real-png-\d+')", page)
    lowered = page.lower()
    assert "<script" not in lowered and "<img src=x" not in lowered and lowered.startswith("<!doctype html>")
    for tag_text in re.findall(r"<[^>]*>", lowered):  # escaped text holds no '<': every <...> is a real tag
        outside_values = re.sub(r"'[^']*'", "''", tag_text)  # attribute values are '...' with no raw ' in them
        assert "onerror=" not in outside_values and "javascript:" not in tag_text, tag_text
    parser = Tags()
    parser.feed(page)
    parser.close()
    assert parser.tags[0][0] == "html"
    ids = set()
    for tag, attrs in parser.tags:
        assert tag in TAGS, tag
        assert set(attrs) <= ATTRS, attrs
        if "id" in attrs:
            assert SAFE_ID.fullmatch(attrs["id"]) and attrs["id"] not in ids, attrs
            ids.add(attrs["id"])
        if "style" in attrs:
            assert SAFE_STYLE.fullmatch(attrs["style"]), attrs
        if tag == "img":
            assert re.fullmatch(r"data:real-png-\d+", attrs["src"]), attrs["src"][:80]
    hrefs = [attrs["href"] for tag, attrs in parser.tags if "href" in attrs]
    assert all(h.startswith("#") and h[1:] in ids for h in hrefs), (hrefs, ids)
    assert parser.data_in_style == report.STYLE
    assert sum(tag == "img" for tag, _ in parser.tags) == embedded


# --- the fuzz test over every field of a real study.json -----------------------------------

DELETE = object()  # the mutation that removes the key (or the array element)
MARKUP = ["<script>alert(1)</script>", "\"'><img src=x onerror=alert(1)>", "javascript:alert(1)//",
          "<script>alert(1)</script> — <img src=x onerror=alert(1)>"]  # a claim line is split at " — "
PAYLOADS = [*MARKUP, "\ud800", "NaN", None, 1e308, math.nan, -math.inf, [], {}, True, 10**400, -1, DELETE]
# fields the page reads (and checks): any other field may hold anything
CLAIM_FIELDS = (r"text|primary|kind|margin|estimate|interval(\[\d+\])?|p|p_adjusted|mde|outcome|regime|seeds|line"
                r"|identity|per_seed(\[\d+\])?")  # fmt: skip
READ = re.compile(r"(the top level|study|title|question|seeds(\[\d+\])?|quick|runs|train_seconds"
                  r"|notes(\[\d+\])?|figures(\[\d+\])?|claims(\[\d+\](\.(" + CLAIM_FIELDS + r"))?)?"
                  r"|tables(\[\d+\](\.title|\.headers(\[\d+\])?"
                  r"|\.rows(\[\d+\](\[\d+\])?)?)?)?)")  # fmt: skip
NULLABLE = re.compile(r"claims\[\d+\]\.(p|p_adjusted|mde|interval\[\d+\])")  # null: a figure not computed
NOT_SHOWN = re.compile(r"claims\[\d+\]\.(text|regime)")  # checked, but the page shows the claim's line


def paths(value, prefix=()):
    """Every path into ``value``: containers and leaves, the root included."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, v in items:
        yield from paths(v, (*prefix, key))


def label(path) -> str:
    """The field's name as the report's messages write it, e.g. ``claims[2].line``."""
    if not path:
        return "the top level"
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")


def mutate(doc, path, payload):
    """A copy of ``doc`` with the value at ``path`` replaced (copies only the containers on the path)."""
    if not path:
        return payload
    doc = dict(doc) if isinstance(doc, dict) else list(doc)
    key, rest = path[0], path[1:]
    if rest:
        doc[key] = mutate(doc[key], rest, payload)
    elif payload is DELETE:
        del doc[key]
    else:
        doc[key] = payload
    return doc


def outcome(directory: Path, study_json: Path, doc, real_uris: set[str]) -> str | ReportError:
    """Render a study.json holding ``doc``: the page (checked) or the ReportError; anything else fails."""
    study_json.write_text(json.dumps(doc, allow_nan=True))
    try:
        with time_limit(10):
            page = render([directory])
    except ReportError as err:
        assert str(err).startswith(f"{study_json}: ") and "Traceback" not in str(err)
        return err
    check_page(page, real_uris)
    return page


@pytest.fixture
def hostile(real_study, tmp_path):
    """A copy of the real study next to files it must not embed: outside PNGs, links out, a FIFO..."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(PNG + b"SECRET-OUTSIDE-THE-STUDY" * 40)
    d = copy_study(real_study, tmp_path / "s" / "h")
    shutil.copyfile(outside / "secret.png", tmp_path / "s" / "secret.png")
    (d / "link.png").symlink_to(outside / "secret.png")
    (d / "dirlink").symlink_to(outside)
    (d / "inner-link.png").symlink_to("curves.png")
    os.mkfifo(d / "fifo.png")
    (d / "notpng.png").write_text("just text, no PNG signature\n")
    with open(d / "big.png", "wb") as f:  # sparse: no disk used
        f.write(PNG)
        f.truncate(report.FIGURE_CAP + 1)
    (d / "sub").mkdir()
    shutil.copyfile(d / "curves.png", d / "q' onerror='alert(1) x.png")  # a real PNG with quotes in its name
    return d


# figure name -> why it is not embedded (None: embedded, as the study's own curves.png)
FIGURES = {
    "/etc/passwd": "not a file name inside the study directory",
    "/dev/zero": "not a file name inside the study directory",
    "/proc/self/environ": "not a file name inside the study directory",
    "": "not a file name inside the study directory",
    "../secret.png": "outside the study directory",
    "../../outside/secret.png": "outside the study directory",
    "../../../../../../../../../etc/passwd": "outside the study directory",
    "link.png": "outside the study directory",
    "dirlink/secret.png": "outside the study directory",
    "fifo.png": "not a regular file",
    "sub": "not a regular file",
    "notpng.png": "not a PNG",
    "big.png": f"over the cap of {report.FIGURE_CAP >> 20} MiB",
    "missing.png": "missing",
    "sub/../curves.png": None,
    "inner-link.png": None,
    "../h/curves.png": None,
    "q' onerror='alert(1) x.png": None,
}


def test_every_field_of_a_real_study_json_mutated_gives_a_safe_page_or_a_report_error(hostile):
    d, study_json = hostile, hostile / "study.json"
    base = json.loads(study_json.read_text())
    base["notes"] = ["a note"]  # the real study has none: give notes[0] a path too
    real_uris = {"data:image/png;base64," + base64.b64encode((d / f).read_bytes()).decode() for f in base["figures"]}
    passwd = base64.b64encode(Path("/etc/passwd").read_bytes()[:12]).decode()
    secret = base64.b64encode((d.parent / "secret.png").read_bytes()[:24]).decode()
    all_paths = list(paths(base))
    assert len(all_paths) > 250 and ("claims", 1, "line") in all_paths and ("tables", 1, "rows", 1, 4) in all_paths

    cases = errors = 0
    for path in all_paths:
        name, read = label(path), bool(READ.fullmatch(label(path)))
        shown_string = read and isinstance(value_at(base, path), str) and not NOT_SHOWN.fullmatch(name)
        nullable = bool(NULLABLE.fullmatch(name))
        for payload in PAYLOADS:
            if payload is DELETE and not path:
                continue
            result = outcome(d, study_json, mutate(base, path, payload), real_uris)
            cases += 1
            if isinstance(result, ReportError):
                errors += 1
                # refused only for a field the page shows, and the message names the field
                message = str(result)
                assert read and ("expected" in message or "not a droplab study (no " in message), (name, message)
                # the field, or the one holding it (an interval of one number, a per-seed value too few)
                named = any(label(path[:k]) in message for k in range(len(path), -1, -1))
                assert named or (not path and "not a droplab study" in message), (name, message)
                continue
            assert passwd not in result and secret not in result
            if read:  # a field the page does not read may hold anything
                assert (payload is not None or nullable) and payload != {}, (name, "accepted", repr(payload))
            if shown_string and payload in MARKUP:  # shown, escaped
                assert all(html.escape(part) in result for part in payload.split(" — ")), (name, payload)
    # the figure names: each in place of each figure, then all of them as the figure list
    fig_paths = [p for p in all_paths if p[:1] == ("figures",)]
    assert fig_paths == [("figures",), ("figures", 0), ("figures", 1)]
    mutations = [(p, [fig]) for p in fig_paths[1:] for fig in FIGURES] + [(("figures",), list(FIGURES))]
    for path, figs in mutations:
        page = outcome(d, study_json, mutate(base, path, figs if len(path) == 1 else figs[0]), real_uris)
        cases += 1
        assert isinstance(page, str) and passwd not in page and secret not in page
        refused = [(f, FIGURES[f]) for f in figs if FIGURES[f] is not None]
        for f, why in refused:
            assert f"figure {html.escape(f)} not embedded: {why}" in page, (f, why)
        kept = len(base["figures"]) - 1 if len(path) == 2 else 0  # the real figures left in the list
        assert page.count("<img ") == kept + len(figs) - len(refused)
    # how many cases ran, so that the test can never silently test nothing
    assert cases == len(all_paths) * 16 - 1 + 2 * 18 + 1 and len(all_paths) > 250
    assert 0 < errors < cases


def value_at(doc, path):
    for key in path:
        doc = doc[key]
    return doc


# --- study.json: malformed, oversized, not a file --------------------------------------------


def edit(directory: Path, change) -> Path:
    study_json = directory / "study.json"
    doc = json.loads(study_json.read_text())
    change(doc)
    study_json.write_text(json.dumps(doc, allow_nan=True))
    return study_json


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.update(claims={"line": "x"}), "claims: got an object; expected an array of objects"),
        (lambda s: s["claims"][1].pop("line"), "claims[1].line: missing; expected a string"),
        (lambda s: s["claims"][1].update(outcome=None), "claims[1].outcome: got null; expected 'supported' or "
                                                        "'contradicted' or 'equivalent' or 'inconclusive'"),
        (lambda s: s["claims"][1].update(outcome="not supported"), "claims[1].outcome: got a string; expected"),
        (lambda s: s["claims"][0].update(kind="better"), "claims[0].kind: got a string; expected 'superiority' or"),
        (lambda s: s["claims"][0].update(primary=1), "claims[0].primary: got a number; expected a boolean"),
        (lambda s: s["claims"][0].update(margin=0), "claims[0].margin: 0; expected a finite number > 0"),
        (lambda s: s["claims"][0].update(estimate=None), "claims[0].estimate: got null; expected a finite number"),
        (lambda s: s["claims"][0].update(p=1.5), "claims[0].p: 1.5; expected a number from 0 to 1 or null"),
        (lambda s: s["claims"][0].update(p_adjusted=-0.1), "claims[0].p_adjusted: -0.1; expected a finite number >= 0"),
        (lambda s: s["claims"][0].update(mde="big"), "claims[0].mde: got a string; expected a finite number >= 0"),
        (lambda s: s["claims"][0].update(interval=[1.0]), "claims[0].interval: 1 values; expected [low, high]"),
        (lambda s: s["claims"][0].update(interval=[2.0, 1.0]), "claims[0].interval: [2.0, 1.0]; expected [low, high]"),
        (lambda s: s["claims"][0].update(seeds=0, per_seed=[]), "claims[0].seeds: 0 with 0 per-seed values"),
        (lambda s: s["claims"][0]["per_seed"].append(1.0), "claims[0].seeds: 2 with 3 per-seed values; expected"),
        (lambda s: s["claims"][0]["per_seed"].__setitem__(0, "1"), "claims[0].per_seed[0]: got a string; expected"),
        (lambda s: s["claims"][0].update(regime=7), "claims[0].regime: got a number; expected a string"),
        (lambda s: s["claims"][0].update(identity="x'><b>"), "claims[0].identity: \"x'><b>\"; expected 16 hexadecimal"),
        (lambda s: s["claims"][0].pop("text"), "claims[0].text: missing; expected a string"),
        (lambda s: s["claims"][0].update(line="claim: x — supported"), "claims[0].line: does not state the claim's "),
        (lambda s: s["claims"].__setitem__(0, {"line": "claim: x — supported", "verdict": "supported"}),
         "claims[0].outcome: missing; expected one of four outcomes (this claim has an earlier droplab's 'verdict'"),
        (lambda s: s["tables"][0].update(rows=["a"]), "tables[0].rows[0]: got a string; expected an array of cells"),
        (lambda s: s["tables"][1]["rows"][1].append({}), "tables[1].rows[1][5]: got an object; expected a string or"),
        (lambda s: s["tables"][0].pop("headers"), "tables[0].headers: missing; expected an array of strings"),
        (lambda s: s.update(seeds=3), "seeds: got a number; expected an array of integers"),
        (lambda s: s.update(seeds=[0, 1.5]), "seeds[1]: got a number; expected an integer"),
        (lambda s: s.update(train_seconds="12"), "train_seconds: got a string; expected a finite number >= 0"),
        (lambda s: s.update(train_seconds=math.nan), "train_seconds: nan; expected a finite number >= 0"),
        (lambda s: s.update(train_seconds=10**400), "train_seconds: 1000000000"),
        (lambda s: s.update(runs=True), "runs: got a boolean; expected an integer"),
        (lambda s: s.update(runs=-4), "runs: -4; expected an integer >= 0"),
        (lambda s: s.update(quick="yes"), "quick: got a string; expected a boolean"),
        (lambda s: s.update(notes=[None]), "notes[0]: got null; expected a string"),
        (lambda s: s.update(figures="curves.png"), "figures: got a string; expected an array of strings"),
        (lambda s: s.update(title="\ud800"), "title: got a string; expected a string of valid Unicode"),
        (lambda s: s.pop("figures"), "not a droplab study (no 'figures')"),
    ],
)
def test_a_malformed_study_json_is_refused_naming_the_field(change, message, real_study, tmp_path):
    study_json = edit(copy_study(real_study, tmp_path / "h"), change)
    with pytest.raises(ReportError) as err:
        render([study_json.parent])
    assert str(err.value).startswith(f"{study_json}: ") and message in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[1, 2]", "the top level: got an array; expected an object (a droplab study)"),
        ("null", "the top level: got null; expected an object"),
        ('{"study": ' + "1" * 5000 + "}", "cannot be read: Exceeds the limit"),
        ("[" * 200_000 + "]" * 200_000, "cannot be read: nested too deeply"),
        (b'{"study": "\xff"}', "cannot be read: not UTF-8 text"),
    ],
)
def test_a_study_json_that_is_not_a_study_object_is_refused(text, message, tmp_path):
    (tmp_path / "study.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ReportError, match=re.escape(message)):
        render([tmp_path])


def test_a_huge_study_json_is_refused_before_it_is_read(tmp_path, monkeypatch):
    with open(tmp_path / "study.json", "wb") as f:  # 1 GiB, sparse: no disk used
        f.truncate(1 << 30)
    message = f"{tmp_path / 'study.json'}: cannot be read: over the cap of 64 MiB (1073741824 bytes)"
    with pytest.raises(ReportError, match=re.escape(message)):
        render([tmp_path])
    # and one that grows past the cap after the size check is read only up to the cap (+1 byte)
    (tmp_path / "study.json").write_text(json.dumps({"pad": "x" * 5000}))
    monkeypatch.setattr(report, "STUDY_JSON_CAP", 1000)
    reads = []
    real_read = report.os.fdopen

    def fdopen(fd, mode):
        f = real_read(fd, mode)
        read = f.read
        f.read = lambda n=-1: reads.append(n) or read(n)
        return f

    monkeypatch.setattr(report.os, "fdopen", fdopen)
    monkeypatch.setattr(report.os, "stat", lambda p, real=os.stat: _shrunk(real(p)))
    with pytest.raises(ReportError, match="over the cap of 1000 bytes"):
        render([tmp_path])
    assert reads == [1001]


def _shrunk(st: os.stat_result) -> os.stat_result:
    """A stat that reports a size of 10 bytes (the file "grew" after it)."""
    fields = list(st)
    fields[stat.ST_SIZE] = 10
    return os.stat_result(fields)


def test_a_study_json_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "study.json")
    with time_limit(10), pytest.raises(ReportError, match="study.json: cannot be read: not a regular file"):
        render([tmp_path])
    with time_limit(10), pytest.raises(ReportError, match="study.json: not a regular file"):
        find_studies([tmp_path])


def test_find_studies_skips_odd_entries(real_study, tmp_path, monkeypatch):
    good = copy_study(real_study, tmp_path / "all" / "good")
    (tmp_path / "all" / "dir-study" / "study.json").mkdir(parents=True)  # a study.json that is a directory
    (tmp_path / "all" / "a-file").write_text("x")
    (tmp_path / "all" / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "all" / "loop").mkdir()
    (tmp_path / "all" / "loop" / "study.json").symlink_to("study.json")  # ELOOP
    (tmp_path / "all" / "fifo").mkdir()
    os.mkfifo(tmp_path / "all" / "fifo" / "study.json")
    locked = copy_study(real_study, tmp_path / "all" / "unreadable")
    real_stat = os.stat

    def stat_(path, *args, **kw):  # as for a directory without permission (the tests run as root)
        if Path(path).parent == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kw)

    monkeypatch.setattr(os, "stat", stat_)
    with time_limit(10):
        assert find_studies([tmp_path / "all"]) == [good]
        with pytest.raises(ReportError, match="dir-study/study.json: not a regular file; expected the study's JSON"):
            find_studies([tmp_path / "all" / "dir-study"])
        with pytest.raises(ReportError, match="no study.json in it or in its subdirectories"):
            find_studies([tmp_path / "all" / "loop"])


def test_studies_of_the_same_or_an_odd_name_get_distinct_safe_anchors(real_study, tmp_path):
    dirs = [copy_study(real_study, tmp_path / name) for name in ("a", "b", "c")]
    edit(dirs[2], lambda s: s.update(study="x' onmouseover='alert(1)"))
    page = render(dirs)
    assert page.count("<a href='#headline'>") == page.count("<h2 id='headline'>") == 1
    assert "<a href='#headline-2'>" in page and "<h2 id='headline-2'>" in page
    assert "<a href='#study-x-onmouseover-alert-1'>" in page and "<h2 id='study-x-onmouseover-alert-1'>" in page
    assert "droplab study x&#x27; onmouseover=&#x27;alert(1) ·" in page


def test_figures_past_the_pages_cap_are_not_embedded(real_study, tmp_path, monkeypatch):
    d = copy_study(real_study, tmp_path / "h")
    sizes = [(d / f).stat().st_size for f in ("curves.png", "val_acc.png")]
    edit(d, lambda s: s.update(figures=["curves.png", "val_acc.png", "curves.png"]))
    monkeypatch.setattr(report, "FIGURES_TOTAL_CAP", sum(sizes))
    page = render([d])
    assert page.count("<img ") == 2 and "figure curves.png not embedded: the page already embeds" in page


# --- writing the page -----------------------------------------------------------------------


def test_report_into_a_directory_or_a_missing_directory_exits_2(real_study, tmp_path, capsys):
    d = copy_study(real_study, tmp_path / "h")
    (tmp_path / "out").mkdir()
    code, _, err = run_cli(["report", str(d), "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and f"{tmp_path / 'out'}: a directory; expected the path of an HTML file to write" in err
    assert list((tmp_path / "out").iterdir()) == [] and "Traceback" not in err
    code, _, err = run_cli(["report", str(d), "-o", str(tmp_path / "missing" / "r.html")], capsys)
    assert code == 2 and f"{tmp_path / 'missing'} is not an existing directory" in err
    assert not (tmp_path / "missing").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h", "out"]


def test_a_failed_write_is_a_report_error(real_study, tmp_path, monkeypatch):
    d = copy_study(real_study, tmp_path / "h")

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(atomic, "write_text", refuse)
    with pytest.raises(ReportError, match=re.escape(f"{tmp_path / 'r.html'}: cannot be written: Permission denied")):
        write_report([d], tmp_path / "r.html")


def test_a_report_never_overwrites_the_studys_own_files(real_study, tmp_path, capsys):
    from droplab.cli import main

    study = tmp_path / "study"
    shutil.copytree(real_study, study)
    before = {p.name: p.read_bytes() for p in study.iterdir() if p.is_file()}
    pngs = sorted(p.name for p in study.glob("*.png"))
    for target in ["study.json", *pngs[:1]]:
        with pytest.raises(SystemExit) as exit:
            main(["report", str(study), "-o", str(study / target)])
        assert exit.value.code == 2 and "is one of the studies' own files" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in study.iterdir() if p.is_file()} == before


# --- claims: each with its own outcome; distinct claims counted once; a suite's outcomes ---------

CLAIM_LI = re.compile(r"<li style='border-color:(#[0-9a-f]{6})'>(.*?)</li>", re.S)
VERDICT = re.compile(r"<span class='verdict' style='color:(#[0-9a-f]{6})'>([a-z]+)</span>")


def with_outcome(claim: dict, outcome: str, identity: str) -> dict:
    """``claim`` as if measured with ``outcome`` (its line rewritten to say so) and ``identity``."""
    line = claim["line"].replace(f" — {claim['outcome']}", f" — {outcome}")
    return {**claim, "outcome": outcome, "line": line, "identity": identity}


def claim_items(page: str) -> list[tuple[str, str, str, str]]:
    """(border colour, outcome word, its colour, the item's text) of each claim on the page, in order."""
    out = []
    for border, body in CLAIM_LI.findall(page):
        (color, word), = VERDICT.findall(body)
        out.append((border, word, color, html.unescape(re.sub(r"<[^>]+>", "", body))))
    return out


def test_each_claim_carries_its_own_outcome_and_colour(real_study, tmp_path):
    """Four claims, one per outcome: each item shows its own word in its own colour (the legend
    holds all four words, so finding a word somewhere on the page would prove nothing)."""
    d = copy_study(real_study, tmp_path / "h")
    first = json.loads((d / "study.json").read_text())["claims"][0]
    claims = [with_outcome(first, o, f"{i:016x}") for i, o in enumerate(report.OUTCOME_COLORS)]
    edit(d, lambda s: s.update(claims=claims))
    items = claim_items(render([d]))
    assert len(items) == 4
    for (border, word, color, text), c in zip(items, claims):
        assert word == c["outcome"] and border == color == report.OUTCOME_COLORS[c["outcome"]], (word, c["outcome"])
        assert text.startswith("primary claim: dropout raises test accuracy — ") and f" — {word} (" in text
    assert len(set(report.OUTCOME_COLORS.values())) == 4


def test_a_claim_line_with_markup_is_escaped(real_study, tmp_path):
    d = copy_study(real_study, tmp_path / "h")
    edit(d, lambda s: [c.update(line=f"{MARKUP[0]} — {c['outcome']} {MARKUP[1]}") for c in s["claims"]])
    page = render([d])
    check_page(page, {"data:image/png;base64," + base64.b64encode((d / f).read_bytes()).decode()
                      for f in ("curves.png", "val_acc.png")})  # fmt: skip
    assert html.escape(MARKUP[0]) in page and html.escape(MARKUP[1]) in page


def test_a_claim_made_from_identical_runs_is_counted_once(real_study, tmp_path):
    a = copy_study(real_study, tmp_path / "all" / "a")
    b = copy_study(real_study, tmp_path / "all" / "b")
    edit(b, lambda s: s.update(study="weight-decay", title="Weight decay"))  # the same runs, another study
    claims = json.loads((a / "study.json").read_text())["claims"]
    page = render([a, b])
    assert "2 distinct claims (2 repeated from identical runs, counted once): " in page
    items = claim_items(page)
    assert len(items) == 4 and all("counted once, there" not in text for *_, text in items[:2])
    assert all("(made from identical runs in headline: counted once, there)" in text for *_, text in items[2:])
    outcomes = [c["outcome"] for c in claims]
    tally = ", ".join(f"{outcomes.count(o)} {o}" for o in report.OUTCOME_COLORS if o in outcomes)
    assert f"counted once): {tally} · " in page
    # another claim in the second study is a claim of its own
    edit(b, lambda s: s["claims"].__setitem__(1, {**s["claims"][1], "identity": "f" * 16}))
    assert "3 distinct claims (1 repeated from identical runs, counted once)" in render([a, b])


def test_a_suite_json_gives_the_primary_claims_the_suites_outcomes(real_study, tmp_path, capsys):
    from droplab.studies.suite import write_suite

    root = tmp_path / "all"
    a = copy_study(real_study, root / "headline")
    b = copy_study(real_study, root / "again")
    edit(b, lambda s: s.update(study="again"))
    reports = [json.loads((d / "study.json").read_text()) for d in (a, b)]
    write_suite(root, reports)  # what `droplab study all` writes: read back as the page reads it
    page = render(find_studies([root]), suites=report.find_suites([root]))
    assert "1 primary claims with the suite&#x27;s outcomes (suite.json)" in page
    assert "2 distinct claims (2 repeated" in page
    # a suite whose primary claim came out supported: the page shows and counts the suite's outcome
    suite = json.loads((root / "suite.json").read_text())
    primary = next(c for c in suite["claims"] if c["primary"])
    if primary["outcome"] != "supported":
        primary.update(with_outcome(primary, "supported", primary["identity"]))
    (root / "suite.json").write_text(json.dumps(suite))
    code, _, err = run_cli(["report", str(root), "-o", str(tmp_path / "r.html")], capsys)
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    items = claim_items(page)
    assert items[0][1] == "supported" and items[0][0] == report.OUTCOME_COLORS["supported"]
    assert items[2][1] == reports[1]["claims"][0]["outcome"]  # the repeat: its own study's line
    assert re.search(r"(^|, )1 supported(,|$)", page.split("counted once): ")[1].split(" · ")[0])
    # a hostile suite.json is refused, naming the file and the field
    (root / "suite.json").write_text(json.dumps({**suite, "claims": [{**primary, "also_in": "x"}]}))
    with pytest.raises(ReportError, match=re.escape(f"{root / 'suite.json'}: claims[0].also_in: got a string; "
                                                    "expected an array of strings")):  # fmt: skip
        write_report([root], tmp_path / "r.html")
    # and a report never overwrites it
    with pytest.raises(ReportError, match="is one of the studies' own files"):
        write_report([root], root / "suite.json")


def test_no_suite_json_says_the_outcomes_are_each_studys_own(real_study, tmp_path):
    page = render([copy_study(real_study, tmp_path / "h")])
    assert "each outcome its study&#x27;s own (no suite.json" in page
