"""The README's Python tour runs as written, in order, as one script."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.integration


def test_readme_python_examples_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) >= 5
    here = Path.cwd()
    os.chdir(tmp_path)
    try:
        namespace: dict[str, object] = {"__name__": "readme"}
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own docs
    finally:
        os.chdir(here)
    out = capsys.readouterr().out
    assert "hourly values" in out
    assert "deviation_pct" in out and "volume_m3_lo_80" in out
