"""The lecture's notebook runs: notebooks/dropout.py executed headless by notebooks/execute.py,
as `make notebook` does, in its quick setting (DROPLAB_NOTEBOOK_QUICK=1) on small generated
Fashion-MNIST-shaped files, so it runs, and is checked, on machines without the real data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
from conftest import write_dataset

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dropout.py"
RUNNER = ROOT / "notebooks" / "execute.py"


def _execute(source: Path, output: Path, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(RUNNER), str(source), "--output", str(output), "--timeout", "300"]
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)


def test_the_notebook_runs_and_shows_its_results(tmp_path):
    data = write_dataset(tmp_path / "data", n_train=600, n_test=200)
    out = tmp_path / "dropout.ipynb"
    done = _execute(NOTEBOOK, out, DROPLAB_NOTEBOOK_QUICK="1", DROPLAB_DATA=str(data))
    assert done.returncode == 0, done.stderr[-4000:]

    cells = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"]
    assert cells and all(c.execution_count for c in cells)  # every cell ran
    outputs = [o for c in cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    # the 2x8 check at p = 0 (the input) and p = 1 (zeros)
    row_0, row_1 = "[ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.]", "[ 8.,  9., 10., 11., 12., 13., 14., 15.]"
    assert f"p=0.0):\ntensor([{row_0},\n        {row_1}])" in text
    assert "p=1.0):\ntensor([[0., 0., 0., 0., 0., 0., 0., 0.],\n        [0., 0., 0., 0., 0., 0., 0., 0.]])" in text
    assert "same output twice in train mode: False; in eval mode: True" in text
    for model in ("scratch", "concise", "plain"):
        assert re.search(rf"{model} +epoch +2: train loss \d", text), model
    # the headline study, read with its outcomes (each claim's own, in the order printed)
    outcomes = re.findall(r"claim: .* — (supported|contradicted|equivalent|inconclusive) \(.*\)\n", text)
    assert len(outcomes) == 2
    summary = outputs[-1]["data"]["text/markdown"]
    items = [line for line in summary.splitlines() if line.startswith("- *dropout")]
    assert len(items) == 2 and all(f"**{v}**" in item for v, item in zip(outcomes, items))
    # curves inline: each run's, the comparison's and the study's two figures
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 5


def test_the_source_is_a_jupytext_script_without_outputs():
    source = NOTEBOOK.read_text()
    assert source.startswith("# ---\n# jupyter:\n#   jupytext:") and "format_name: percent" in source
    assert source.count("# %% [markdown]") >= 5 and "\n# %matplotlib inline\n" in source


def test_a_failing_cell_fails_the_run(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text('# %%\nprint("before")\n\n# %%\nraise ValueError("this cell fails")\n')
    done = _execute(broken, tmp_path / "broken.ipynb")
    assert done.returncode == 1
    assert "a cell failed" in done.stderr and "ValueError: this cell fails" in done.stderr
    cells = nbformat.read(tmp_path / "broken.ipynb", as_version=4).cells
    assert cells[0].outputs[0]["text"] == "before\n"  # written up to the failure
