"""The codebase's own rules, checked: small modules and functions, a library that speaks no CLI,
no block of code written twice.

- No module in ``src/`` over 400 lines and no function over 80, unless the module's docstring
  says why in a paragraph that starts with ``Size:``.
- No string a library module could print or raise (every string literal that is not a
  docstring) names a ``--flag``: the library raises domain errors and only ``droplab.cli`` speaks
  of flags.
- No run of 6 or more code lines (blank lines, comments and imports left out, white space folded)
  stands twice in ``src/``, unless one of its lines carries a ``# parallel:`` comment saying why
  (on the line, or on a comment line of its own just above it).
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "droplab"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
DUPLICATE_LINES = 6
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*", re.IGNORECASE)
DASHES = re.compile(r"(?:^|[^\w-])--$")  # a string that ends in "--": a flag's name follows it


def _name(path: Path) -> str:
    return str(path.relative_to(SRC)) if path.is_relative_to(SRC) else path.name


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _is_cli(path: Path) -> bool:
    rel = path.relative_to(SRC)
    return rel.parts[0] in ("cli", "cli.py", "__main__.py")


def _excused(tree: ast.Module) -> bool:
    doc = ast.get_docstring(tree) or ""
    return any(line.startswith("Size:") for line in doc.splitlines())


def oversized(paths: list[Path]) -> list[str]:
    """Modules over 400 lines (unless their docstring says why, under ``Size:``) and functions over 80."""
    found = []
    for path in paths:
        text = path.read_text()
        tree = ast.parse(text)
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES and not _excused(tree):
            found.append(f"{_name(path)}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{_name(path)}:{node.lineno} {node.name}: {length} lines")
    return found


def test_the_scans_read_the_whole_package():
    assert len(_modules()) > 50 and any(p.name == "loop.py" for p in _modules())


def test_modules_and_functions_are_small():
    too_big = oversized(_modules())
    assert not too_big, "over the limits (400 lines a module, 80 a function): " + "; ".join(too_big)


def test_the_size_scan_finds_a_long_module_and_function(tmp_path):
    long_function = tmp_path / "a.py"
    long_function.write_text("def f():\n" + "    x = 1\n" * 80)
    long_module = tmp_path / "b.py"
    long_module.write_text("x = 1\n" * 401)
    excused = tmp_path / "c.py"
    excused.write_text('"""Why.\n\nSize: one table of 401 rows, read as one."""\n' + "x = 1\n" * 401)
    assert [hit.split(":")[0] for hit in oversized([long_function, long_module, excused])] == ["a.py", "b.py"]


def _docstring_nodes(tree: ast.Module) -> set[int]:
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return docs


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes))


def _text(node: ast.Constant) -> str:
    return node.value if isinstance(node.value, str) else node.value.decode("latin-1")


def _pieces(node: ast.AST) -> list[ast.AST]:
    """The parts a string is built from: an f-string's, ``+``'s or ``%``'s sides, ``format``'s, ``join``'s."""
    if isinstance(node, ast.JoinedStr):
        return list(node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return [node.left, node.right]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join"):
        return [*node.args, *(k.value for k in node.keywords)]
    return []


def flag_strings(path: Path) -> list[str]:
    """Where a module's code (not its docstrings) writes a ``--flag``, as 'file:line: text': a
    string that names one, a string ending in ``--`` that something is appended to (``"--" +
    name``, ``f"--{name}"``, ``"%s" % "--"``), or ``"-" * 2``."""
    tree = ast.parse(path.read_text())
    docs = _docstring_nodes(tree)
    joined = {id(child) for node in ast.walk(tree) for child in _pieces(node)}  # parts of a string built
    hits = []
    for node in ast.walk(tree):
        if not _is_text(node) or id(node) in docs:
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
                sides = (node.left, node.right)
                if any(_is_text(n) and _text(n) == "-" for n in sides) and any(
                        isinstance(n, ast.Constant) and n.value == 2 for n in sides):
                    hits.append(f"{_name(path)}:{node.lineno}: '-' * 2")
        elif FLAG.search(_text(node)) or (id(node) in joined and DASHES.search(_text(node))):
            hits.append(f"{_name(path)}:{node.lineno}: {node.value!r}")
    return hits


def test_no_library_message_names_a_command_line_flag():
    found = [hit for path in _modules() if not _is_cli(path) for hit in flag_strings(path)]
    assert not found, "library strings that name a CLI flag (map the error in droplab.cli): " + "; ".join(found)


PLANTED_FLAGS = [
    'raise ValueError(f"{n}: choose another --out")',
    'raise ValueError("-" * 2 + "out")',
    'raise ValueError("--" + "seeds")',
    'raise ValueError("%sresume" % "--")',
    'raise ValueError("{}{}".format("--", "data-dir"))',
    """raise ValueError(f"{'-' * 2}jobs")""",
    'raise ValueError("--" + n.replace("_", "-"))',
    'raise ValueError(f"--{n}")',
    'raise ValueError(b"--out")',
    'raise ValueError("use --Out")',
]


@pytest.mark.parametrize("line", PLANTED_FLAGS)
def test_the_flag_scan_finds_a_flag_however_it_is_written(tmp_path, line):
    bad = tmp_path / "bad.py"
    bad.write_text(f'"""Docs may say --out."""\ndef f(n):\n    """--seeds too."""\n    {line}\n')
    assert flag_strings(bad), line


def test_the_flag_scan_passes_docstrings_and_plain_dashes(tmp_path):
    good = tmp_path / "good.py"
    good.write_text('"""Docs may say --out."""\ndef f(n):\n    """--seeds too."""\n'
                    '    return f"{n} -- {n}", "a - b", "-" * 40, "x--y"\n')
    assert flag_strings(good) == []


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, folded text) of each line that is code: not blank, a comment or an import.
    A ``# parallel:`` comment on a line of its own marks the next line of code."""
    out, marked = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = " ".join(line.split())
        if text.startswith("#"):
            marked = marked or "# parallel:" in text
            continue
        if not text or text.startswith(("import ", "from ")) or text in "()[]{},:":
            continue
        out.append((number, text + ("  # parallel:" if marked and "# parallel:" not in text else "")))
        marked = False
    return out


def repeated_blocks(paths: list[Path], size: int = DUPLICATE_LINES) -> list[str]:
    """Runs of ``size`` code lines that stand in two places, unless one line says ``# parallel:``."""
    seen: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for path in paths:
        lines = _code_lines(path)
        for i in range(len(lines) - size + 1):
            window = lines[i : i + size]
            if any("# parallel:" in text for _, text in window):
                continue
            key = tuple(re.sub(r"\s+#.*$", "", text) for _, text in window)  # a comment added is no change
            if len(set(key)) < 3:  # a column of closing brackets or one repeated line
                continue
            seen[key].append(f"{_name(path)}:{window[0][0]}")
    return [" ~ ".join(places) for places in seen.values() if len(places) > 1]


def test_no_block_is_written_twice():
    repeated = repeated_blocks(_modules())
    assert not repeated, "blocks of 6+ lines written twice (share one, or mark '# parallel: why'): " + "; ".join(
        repeated[:10])


def test_the_duplicate_scan_finds_a_copy(tmp_path):
    body = "".join(f"    x{i} = f(x{i - 1}, {i})\n" for i in range(1, 8))
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n" + body)
    b.write_text("def g():\n" + body)
    assert repeated_blocks([a, b])
    b.write_text("def g():\n" + body.replace("x3 = f(x2, 3)", "x3 = f(x2, 3)  # a comment changes nothing"))
    assert repeated_blocks([a, b])
    b.write_text("def g():\n" + body.replace("x3 = f(x2, 3)", "x3 = f(x2, 3)  # parallel: on purpose"))
    assert not repeated_blocks([a, b])
    b.write_text("def g():\n" + body.replace("    x3 = f(x2, 3)", "    # parallel: on purpose\n    x3 = f(x2, 3)"))
    assert not repeated_blocks([a, b])


# The layers of docs/layout.md, highest first; a module imports only from its own layer or below.
LAYERS = [
    ("interface", {"cli", "__main__"}),
    ("experiments", {"studies", "compare", "verdicts"}),
    ("training", {"train", "ensemble", "recipes"}),
    ("models", {"models", "vit"}),
    ("layers", {"nn", "noise", "weights", "swap", "hf"}),
    ("math", {"functional", "structured", "fused", "residual", "attention", "alpha"}),
    ("foundations", {"report", "studyfile", "stats", "plots", "progress", "interrupt", "threads", "memory",
                     "checkpoint", "rundir", "atomic", "data"}),
    ("kernels", {"kernels"}),
]


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else module
    for rank, (_, members) in enumerate(LAYERS):
        if top in members:
            return rank
    raise AssertionError(f"droplab.{top} is in no layer of docs/layout.md (add it to LAYERS and the page)")


def imports(path: Path, root: Path = SRC.parent) -> list[tuple[int, str]]:
    """(line, droplab module) of each import of droplab in ``path`` under ``root`` (top-level or in a function)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            names = [node.module] if node.module else [a.name for a in node.names]
            found += [(node.lineno, ".".join([*base, n])) for n in names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("droplab"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("droplab")]
    return found


def test_imports_go_down_the_layers():
    upward = []
    for path in _modules():
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        if module == "droplab.__init__":
            continue
        for line, target in imports(path):
            top = target.split(".")[1] if "." in target else ""
            if not ((SRC / top).is_dir() or (SRC / f"{top}.py").is_file()):  # droplab itself (its __version__)
                continue
            if _layer(target) < _layer(module):
                upward.append(f"{_name(path)}:{line} imports {target} ({LAYERS[_layer(target)][0]} above "
                              f"{LAYERS[_layer(module)][0]})")
    assert not upward, "upward imports: " + "; ".join(upward)


def test_the_import_scan_resolves_relative_imports(tmp_path):
    module = tmp_path / "droplab" / "train" / "loop.py"
    module.parent.mkdir(parents=True)
    module.write_text("from .config import x\nfrom .. import rundir\nfrom ..studies.jobs import y\n"
                      "def f():\n    import droplab.cli\n")
    found = imports(module, tmp_path)
    assert found == [(1, "droplab.train.config"), (2, "droplab.rundir"), (3, "droplab.studies.jobs"),
                     (5, "droplab.cli")]
    assert [_layer(t) < _layer("droplab.train.loop") for _, t in found] == [False, False, True, True]
