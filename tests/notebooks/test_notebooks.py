"""Every notebook in notebooks/ runs end to end in a fresh kernel of this environment."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.notebook


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ must hold at least the quickstart notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    # The notebooks assert on their own results; any failing cell raises here.
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    # every code cell ran and the figures rendered
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
