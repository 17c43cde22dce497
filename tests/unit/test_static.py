"""Static checks as part of the suite: ruff on the tree, mypy --strict on the packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["ingest", "warehouse", "analytics", "forecasting", "anomalies", "dashboards"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_is_clean() -> None:
    proc = _run("ruff", "check", "--output-format", "concise", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_on_packages() -> None:
    proc = _run("mypy", "--strict", *PACKAGES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
