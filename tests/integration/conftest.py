"""Fixtures shared by the integration tests: a small simulated enterprise."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_simulation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded simulator output folder: 20 metering points, 14 winter days, faults on."""
    from ingest import SimulationConfig, simulate

    out = tmp_path_factory.mktemp("simulation")
    simulate(SimulationConfig(meters=20, days=14, seed=3), out)
    return out
