"""The codebase's own rules, checked: small modules and functions, a library that speaks no CLI,
no block of code written twice.

- No module in ``src/`` over 400 lines and no function over 80, unless the module's docstring
  says why in a paragraph that starts with ``Size:``.
- No string a library module could print or raise (every string literal that is not a
  docstring) names a ``--flag``: the library raises domain errors and only ``droplab.cli`` speaks
  of flags.
- No run of 6 or more code lines (blank lines, comments and imports left out, white space folded)
  stands twice in ``src/``, unless one of its lines carries a ``# parallel:`` comment saying why.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "droplab"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
DUPLICATE_LINES = 6
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


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


def test_modules_and_functions_are_small():
    too_big = []
    for path in _modules():
        text = path.read_text()
        tree = ast.parse(text)
        if _excused(tree):
            continue
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            too_big.append(f"{path.relative_to(SRC)}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_big.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {length} lines")
    assert not too_big, "over the limits (400 lines a module, 80 a function): " + "; ".join(too_big)


def _docstring_nodes(tree: ast.Module) -> set[int]:
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return docs


def flag_strings(path: Path) -> list[str]:
    """The non-docstring string literals of a module that name a ``--flag``, as 'file:line: text'."""
    tree = ast.parse(path.read_text())
    docs = _docstring_nodes(tree)
    return [f"{_name(path)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
            and FLAG.search(node.value)]


def test_no_library_message_names_a_command_line_flag():
    found = [hit for path in _modules() if not _is_cli(path) for hit in flag_strings(path)]
    assert not found, "library strings that name a CLI flag (map the error in droplab.cli): " + "; ".join(found)


def test_the_flag_scan_finds_a_flag(tmp_path):
    """The scan itself: a raise naming a flag is found, a docstring that names one is not."""
    bad = tmp_path / "bad.py"
    bad.write_text('"""Docs may say --out."""\ndef f(n):\n    """--seeds too."""\n'
                   '    raise ValueError(f"{n}: choose another --out")\n')
    hits = flag_strings(bad)
    assert len(hits) == 1 and "choose another --out" in hits[0]


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, folded text) of each line that is code: not blank, a comment or an import."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = " ".join(line.split())
        if not text or text.startswith("#") or text.startswith(("import ", "from ")) or text in "()[]{},:":
            continue
        out.append((number, text))
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
            key = tuple(text.split("  #")[0] for _, text in window)
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
    b.write_text("def g():\n" + body.replace("x3 = f(x2, 3)", "x3 = f(x2, 3)  # parallel: on purpose"))
    assert not repeated_blocks([a, b])
