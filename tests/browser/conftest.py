"""Fixtures of the browser tier: a filled DuckDB store, the app on loopback, headless Chromium.

``dashboard_store_path`` is the one seam: it returns a migrated, filled DuckDB file.  It
writes a small synthetic enterprise today; swap its body for the demo pipeline's output
(``askug demo --db …``) without touching the tests.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from werkzeug.serving import make_server

from dashboards.app import create_app
from warehouse import open_store

CHROMIUM = os.environ.get("ASKUG_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ASKUG_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL_HINT = "install them with: apt-get install chromium chromium-driver"

#: Last history instant of the synthetic forecast run (UTC midnight).
CUTOFF = dt.datetime(2025, 1, 20, tzinfo=dt.UTC)
HISTORY_DAYS = 40
BACKCAST_DAYS = 35
HORIZON_HOURS = 48

#: (meter_id, name, branch, category, base m3/h, m3/h per heating degree)
METERS = [
    ("M000101", "Boiler house No. 3", "B01", "municipal", 6.0, 1.4),
    ("M000102", "School No. 12", "B01", "municipal", 1.5, 0.35),
    ("M000103", "Bakery Kolosok", "B01", "commercial", 2.5, 0.12),
    ("M000104", "Brick works", "B01", "industrial", 42.0, 0.8),
    ("M000105", "Apartment block 7", "B01", "household", 0.6, 0.22),
    ("M000201", "Greenhouse complex", "B02", "industrial", 25.0, 2.5),
    ("M000202", "Shopping centre Raduga", "B02", "commercial", 3.0, 0.5),
    ("M000203", "Hospital No. 2", "B02", "municipal", 5.0, 0.9),
    ("M000204", "Private houses, Lesnaya st.", "B02", "household", 0.8, 0.3),
    ("M000205", "Car wash", "B02", "commercial", 1.2, 0.05),
]
#: Injected deviations: meter → {days before the cutoff: relative bias}.
BIASES = {
    "M000102": {3: 0.55, 4: 0.6, 5: 0.5},  # heating left on over a holiday: red
    "M000104": {1: -0.45, 2: -0.4},  # production stopped: red
    "M000201": {6: 0.15, 7: 0.2, 8: 0.12},  # amber
    "M000205": {i: 0.35 for i in range(9, 14)},  # leak: red
    "M000203": {2: -0.09},
}
GAPS = {"M000204": 10}  # one day with missing hours: grey


def _temperature(
    ts: list[dt.datetime], station_shift: float, rng: np.random.Generator
) -> np.ndarray:
    t0 = CUTOFF.timestamp()
    days = np.array([(x.timestamp() - t0) / 86400 for x in ts])
    local_hour = np.array([(x.hour + 3) % 24 for x in ts])  # Moscow is UTC+3
    weekly = 5.0 * np.sin(days / 6.0)
    diurnal = -3.0 * np.cos((local_hour - 3) / 24 * 2 * math.pi)
    return -9.0 + station_shift + weekly + diurnal + rng.normal(0, 0.8, len(ts))


def _profile(ts: list[dt.datetime], category: str) -> np.ndarray:
    local_hour = np.array([(x.hour + 3) % 24 for x in ts])
    weekday = np.array([(x + dt.timedelta(hours=3)).weekday() for x in ts])
    day = (local_hour >= 7) & (local_hour < 22)
    if category in ("commercial", "municipal"):
        return np.where(day, 1.25, 0.7) * np.where(weekday >= 5, 0.85, 1.0)
    if category == "industrial":
        return np.where(weekday >= 5, 0.6, 1.0) * np.where(day, 1.1, 0.9)
    return np.where(day, 1.1, 0.85)


def build_synthetic_store(path: Path, *, seed: int = 20250120) -> Path:
    """Write a small, realistic enterprise into a new DuckDB file at ``path``."""
    rng = np.random.default_rng(seed)
    start = CUTOFF - dt.timedelta(days=HISTORY_DAYS)
    hours = [start + dt.timedelta(hours=h) for h in range((HISTORY_DAYS * 24) + HORIZON_HOURS)]
    with open_store(path=path) as store:
        store.migrate()
        store.write(
            "companies",
            pl.DataFrame(
                {
                    "company_id": ["C01"],
                    "name": ["Gorgaz Yug"],
                    "time_zone": ["Europe/Moscow"],
                    "contract_hour": [10],
                }
            ),
        )
        store.write(
            "branches",
            pl.DataFrame(
                {
                    "branch_id": ["B01", "B02"],
                    "company_id": ["C01", "C01"],
                    "name": ["Central district", "Northern district"],
                    "weather_station": ["WS01", "WS02"],
                }
            ),
        )
        store.write(
            "metering_points",
            pl.DataFrame(
                {
                    "meter_id": [m[0] for m in METERS],
                    "branch_id": [m[2] for m in METERS],
                    "name": [m[1] for m in METERS],
                    "resource": "gas",
                    "category": [m[3] for m in METERS],
                    "time_zone": "Europe/Moscow",
                    "contract_hour": 10,
                    "std_temperature_c": 20.0,
                    "std_pressure_kpa": 101.325,
                }
            ),
        )
        temps = {
            ws: _temperature(hours, shift, rng) for ws, shift in (("WS01", 0.0), ("WS02", -2.5))
        }
        store.write(
            "weather",
            pl.concat(
                [
                    pl.DataFrame(
                        {"station_id": ws, "ts": hours, "temperature_c": t, "quality": "valid"}
                    )
                    for ws, t in temps.items()
                ]
            ),
        )
        hourly, forecasts = [], []
        for meter_id, _name, branch, category, base, slope in METERS:
            temp = temps["WS01" if branch == "B01" else "WS02"]
            expected = (base + slope * np.clip(18.0 - temp, 0, None)) * _profile(hours, category)
            before = np.array([(CUTOFF - x).total_seconds() for x in hours])
            days_before = np.ceil(before / 86400).astype(int)  # 1 = the last day before the cutoff
            bias = np.array([BIASES.get(meter_id, {}).get(int(d), 0.0) for d in days_before])
            actual = expected * (1 + bias) * (1 + rng.normal(0, 0.03, len(hours)))
            past = before > 0
            gap = (days_before == GAPS.get(meter_id, -1)) & np.isin(
                np.arange(len(hours)) % 24, [5, 6, 7]
            )
            hourly.append(
                pl.DataFrame(
                    {
                        "meter_id": meter_id,
                        "ts": [h for h, p in zip(hours, past, strict=True) if p],
                        "volume_m3": np.where(gap, np.nan, actual)[past],
                        "quality": np.where(gap, "missing", "valid")[past],
                        "source": "register",
                    }
                ).with_columns(pl.col("volume_m3").fill_nan(None))
            )
            in_run = before <= BACKCAST_DAYS * 86400
            spread = 0.08 * expected
            forecasts.append(
                pl.DataFrame(
                    {
                        "meter_id": meter_id,
                        "ts": [h for h, r in zip(hours, in_run, strict=True) if r],
                        "model": "hdd_regression",
                        "cutoff": CUTOFF,
                        "volume_m3": expected[in_run],
                        "volume_m3_lo_80": (expected - 1.28 * spread)[in_run],
                        "volume_m3_hi_80": (expected + 1.28 * spread)[in_run],
                        "temperature_c": temp[in_run],
                    }
                )
            )
        store.write("hourly_archive", pl.concat(hourly))
        store.write("forecasts", pl.concat(forecasts))
        store.refresh_rollups()
    return path


@pytest.fixture(scope="session")
def dashboard_store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, filled DuckDB file for the dashboards (synthetic for now)."""
    return build_synthetic_store(tmp_path_factory.mktemp("store") / "askug.duckdb")


@pytest.fixture(scope="session")
def demo_store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store the real demo pipeline writes (``askug demo --no-serve``), small and seeded."""
    workdir = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "dashboards.cli", "demo", "--no-serve", "--meters", "40", "--days", "30",
         "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return workdir / "askug.duckdb"


@pytest.fixture(scope="session")
def demo_dashboard_url(demo_store_path: Path) -> Iterator[str]:
    """The app on the demo pipeline's store."""
    with serve(demo_store_path) as url:
        yield url


@contextlib.contextmanager
def serve(path: Path) -> Iterator[str]:
    """Serve ``create_app`` on the DuckDB file at ``path`` (werkzeug, free loopback port)."""
    store = open_store(path=path, read_only=True)
    server = make_server("127.0.0.1", 0, create_app(store).server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dash-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        store.close()


@pytest.fixture(scope="session")
def dashboard_url(dashboard_store_path: Path) -> Iterator[str]:
    """The app on the filled store."""
    with serve(dashboard_store_path) as url:
        yield url


@pytest.fixture
def empty_dashboard_url(tmp_path: Path) -> Iterator[str]:
    """The app on a migrated store with no data at all."""
    path = tmp_path / "empty.duckdb"
    with open_store(path=path) as store:
        store.migrate()
    with serve(path) as url:
        yield url


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Headless Chromium through chromedriver; missing binaries fail loudly."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        pytest.fail(f"browser tests need {', '.join(missing)}; {INSTALL_HINT}", pytrace=False)
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1600,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except (WebDriverException, OSError) as exc:
        pytest.fail(
            f"cannot start headless Chromium ({exc.__class__.__name__}: {exc}); {INSTALL_HINT}",
            pytrace=False,
        )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests save screenshots (printed in the report for a human to look at)."""
    path = tmp_path_factory.mktemp("screenshots")
    _SCREENSHOTS.append(path)
    return path


_SCREENSHOTS: list[Path] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for path in _SCREENSHOTS:
        shots = sorted(p.name for p in path.glob("*.png"))
        if shots:
            terminalreporter.write_line(f"dashboard screenshots in {path}: {', '.join(shots)}")
