"""Execute a jupytext notebook headless and write it as an ``.ipynb`` with its outputs.

    python notebooks/execute.py notebooks/dropout.py            # writes notebooks/dropout.ipynb
    python notebooks/execute.py notebooks/dropout.py --output /tmp/out.ipynb

The kernel is this interpreter (``sys.executable``), whatever kernels Jupyter has registered,
so the notebook imports the droplab that this Python imports. It runs in the notebook's own
directory; a cell that raises stops the run with the cell and its traceback, and exit status 1.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from ipykernel.kernelspec import get_kernel_dict
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


class _ThisPython(KernelSpecManager):
    """Every kernel name resolves to an IPython kernel on this interpreter. It listens on
    127.0.0.1 only; its log is kept to errors (a headless run has no use for its notices)."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        spec = get_kernel_dict()
        return KernelSpec(resource_dir="", **{**spec, "argv": [*spec["argv"], "--IPKernelApp.log_level=ERROR"]})


def _progress(notebook) -> dict:
    """Hooks that print one line per code cell as it finishes: a long run shows where it is."""
    total, started = sum(c.cell_type == "code" for c in notebook.cells), {}

    def start(cell, cell_index) -> None:
        started[cell_index] = time.perf_counter()

    def done(cell, cell_index, execute_reply) -> None:
        first = next((line for line in cell.source.splitlines() if line.strip()), "")[:60]
        seconds = time.perf_counter() - started.pop(cell_index, time.perf_counter())
        print(f"  cell {cell.execution_count}/{total} ({seconds:.0f} s): {first}", flush=True)

    return {"on_cell_start": start, "on_cell_executed": done}


def execute(source: Path, output: Path, timeout: int) -> None:
    notebook = jupytext.read(source)
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=_ThisPython())
    resources = {"metadata": {"path": str(source.parent)}}
    client = NotebookClient(notebook, km=manager, timeout=timeout, resources=resources, **_progress(notebook))
    try:
        client.execute()
    finally:
        nbformat.write(notebook, output)  # with the outputs so far: a failed run shows where it stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the notebook, a jupytext .py (percent format)")
    parser.add_argument("--output", type=Path, help="the executed .ipynb (default: beside the source)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds one cell may run (default: 1800)")
    args = parser.parse_args(argv)
    output = args.output or args.source.with_suffix(".ipynb")
    try:
        execute(args.source.resolve(), output, args.timeout)
    except CellExecutionError as err:
        traceback = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # IPython's colours, unreadable in a log
        print(f"{args.source}: a cell failed; the outputs up to it are in {output}\n{traceback}", file=sys.stderr)
        return 1
    print(f"{args.source}: executed, written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
