"""The demo, as a newcomer sees it: `askug demo` output served and opened in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from warehouse import load_meters, open_store

pytestmark = pytest.mark.browser

GREY = (0xE0, 0xE0, 0xE0)


def _rgb(css: str) -> tuple[int, int, int]:
    r, g, b = (int(float(x)) for x in re.findall(r"[\d.]+", css)[:3])
    return r, g, b


def test_demo_deviation_table_colours_real_metering_points(
    browser: Any, demo_dashboard_url: str, demo_store_path: Path, screenshot_dir: Path
) -> None:
    with open_store(path=demo_store_path, read_only=True) as store:
        meters = load_meters(store)
    browser.get(demo_dashboard_url + "/")
    WebDriverWait(browser, 60).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "#deviation-table td.deviation-cell"))
    )
    cells: list[dict[str, str]] = browser.execute_script(
        """return [...document.querySelectorAll('#deviation-table td.deviation-cell')].map(td => ({
               meter: td.dataset.meter, background: getComputedStyle(td).backgroundColor}));"""
    )
    shown = {c["meter"] for c in cells}
    # every gas metering point the demo simulated and forecast shows up, none invented
    assert shown <= set(meters.get_column("meter_id"))
    assert len(shown) >= 0.9 * meters.height
    colours = [_rgb(c["background"]) for c in cells]
    coloured = [c for c in colours if c != GREY and c != (255, 255, 255)]
    assert len(coloured) >= 0.8 * len(colours)
    greens = [c for c in coloured if c[1] > c[0] + 40]
    assert len(greens) >= 0.5 * len(coloured), "most demo meters should match their model"
    assert len(set(coloured)) >= 3, "deviations of the injected faults must stand out"
    browser.save_screenshot(str(screenshot_dir / "demo-deviation.png"))


def test_demo_forecast_page_draws_for_a_simulated_meter(
    browser: Any, demo_dashboard_url: str, demo_store_path: Path, screenshot_dir: Path
) -> None:
    with open_store(path=demo_store_path, read_only=True) as store:
        municipal = load_meters(store).filter(pl.col("category") == "municipal")
    meter = municipal.get_column("meter_id")[0]
    browser.get(f"{demo_dashboard_url}/forecast?meter={meter}")
    info = WebDriverWait(browser, 60).until(
        lambda d: d.execute_script(
            """const el = document.querySelector('#forecast-graph .js-plotly-plot');
               if (!el || !el.data || el.data.length < 5) return null;
               return {title: el.layout.title.text,
                       traces: el.data.map(t => [t.name, (t.x || []).length])};"""
        )
    )
    assert meter in info["title"]
    lengths = dict(info["traces"])
    assert lengths["Actual"] >= 24 * 13 and lengths["Forecast"] >= 24  # two weeks of history shown
    assert lengths["Outdoor temperature"] > lengths["Actual"]
    browser.save_screenshot(str(screenshot_dir / "demo-forecast.png"))
