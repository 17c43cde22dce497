"""The dashboards in headless Chromium: deviation table colours and tooltips, forecast graph."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from warehouse import load_meters, open_store

pytestmark = pytest.mark.browser

TIMEOUT = 30


def _wait(driver: Any, condition: Any) -> Any:
    return WebDriverWait(driver, TIMEOUT).until(condition)


def _rgb(css: str) -> tuple[int, int, int, float]:
    nums = [float(x) for x in re.findall(r"[\d.]+", css)]
    return int(nums[0]), int(nums[1]), int(nums[2]), nums[3] if len(nums) > 3 else 1.0


def _severe(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_deviation_table_colours_cells_of_the_stores_meters(
    browser: Any, dashboard_url: str, dashboard_store_path: Path, screenshot_dir: Path
) -> None:
    with open_store(path=dashboard_store_path, read_only=True) as store:
        stored = set(load_meters(store).get_column("meter_id").to_list())
    browser.get(dashboard_url + "/")
    _wait(
        browser,
        EC.presence_of_element_located((By.CSS_SELECTOR, "#deviation-table td.deviation-cell")),
    )
    shown = {
        e.text
        for e in browser.find_elements(By.CSS_SELECTOR, "#deviation-table td.deviation-meter")
    }
    assert shown and shown <= stored, f"table shows {shown}, store has {stored}"
    assert len(shown) >= 8
    branches = browser.find_elements(By.CSS_SELECTOR, "#deviation-table tr.deviation-branch-row")
    assert len(branches) >= 2
    cells: list[dict[str, Any]] = browser.execute_script(
        """
        return [...document.querySelectorAll('#deviation-table td.deviation-cell')].map(td => ({
            id: td.id, meter: td.dataset.meter, day: td.dataset.day,
            background: getComputedStyle(td).backgroundColor,
        }));
        """
    )
    assert {c["meter"] for c in cells} == shown
    assert len(cells) >= 14 * len(shown)
    assert all(c["id"] == f"deviation-cell-{c['meter']}-{c['day'].replace('-', '')}" for c in cells)
    colours = {_rgb(c["background"])[:3] for c in cells}
    assert (255, 255, 255) not in colours and all(_rgb(c["background"])[3] == 1.0 for c in cells)
    assert len(colours) >= 4, colours
    greens = [rgb for rgb in colours if rgb[1] > rgb[0] + 40 and rgb[1] > rgb[2] + 40]
    reds = [rgb for rgb in colours if rgb[0] > rgb[1] + 80 and rgb[0] > rgb[2] + 80]
    assert greens and reds, colours
    browser.save_screenshot(str(screenshot_dir / "deviation.png"))

    # Hover a red cell: its tooltip gives the actual, expected and deviation volumes.
    red_cell = next(c for c in cells if _rgb(c["background"])[:3] in reds)
    td = browser.find_element(By.ID, red_cell["id"])
    tip = td.find_element(By.CSS_SELECTOR, ".deviation-tip")
    assert not tip.is_displayed()
    browser.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'});", td)
    ActionChains(browser).move_to_element(td).perform()
    _wait(browser, lambda d: tip.is_displayed())
    text = tip.text
    assert red_cell["meter"] in text
    assert "Actual:" in text and "Expected:" in text and "Deviation:" in text, text
    assert "m³" in text and "%" in text
    browser.save_screenshot(str(screenshot_dir / "deviation-tooltip.png"))

    legend = browser.find_element(By.ID, "deviation-legend").text
    assert "5 %" in legend and "30 %" in legend
    assert _severe(browser) == []


def test_meter_link_opens_its_forecast(browser: Any, dashboard_url: str) -> None:
    browser.get(dashboard_url + "/")
    link = _wait(browser, EC.element_to_be_clickable((By.LINK_TEXT, "M000102")))
    link.click()
    _wait(browser, EC.url_contains("/forecast?meter=M000102"))
    _wait(
        browser,
        lambda d: (
            "M000102" in d.find_element(By.ID, "forecast-details").text
            or "M000102" in d.find_element(By.ID, "forecast-meter-select").text
        ),
    )
    assert _severe(browser) == []


def test_forecast_page_draws_history_forecast_and_interval(
    browser: Any, dashboard_url: str, screenshot_dir: Path
) -> None:
    browser.get(dashboard_url + "/forecast?meter=M000201")
    _wait(
        browser,
        EC.presence_of_element_located((By.CSS_SELECTOR, "#forecast-graph .js-plotly-plot")),
    )
    script = """
        const el = document.querySelector('#forecast-graph .js-plotly-plot');
        if (!el || !el.data || el.data.length < 2) return null;
        return {
            traces: el.data.map(t => ({name: t.name, n: (t.x || []).length, yaxis: t.yaxis || 'y', fill: t.fill || ''})),
            yTitle: el.layout.yaxis.title.text, y2Title: el.layout.yaxis2.title.text,
            xTitle: el.layout.xaxis.title.text, shapes: (el.layout.shapes || []).length,
            title: el.layout.title.text,
        };
    """
    info = _wait(browser, lambda d: d.execute_script(script))
    traces = {t["name"]: t for t in info["traces"]}
    assert len(info["traces"]) >= 5
    for name in (
        "Actual",
        "Expected (backcast)",
        "Forecast",
        "80 % interval",
        "Outdoor temperature",
    ):
        assert traces[name]["n"] > 0, (name, info)
    assert traces["80 % interval"]["fill"] == "tonexty"
    assert traces["Outdoor temperature"]["yaxis"] == "y2"
    assert (
        "m³/h" in info["yTitle"] and "°C" in info["y2Title"] and "Europe/Moscow" in info["xTitle"]
    )
    assert info["shapes"] >= 1  # the cutoff line
    assert "M000201" in info["title"]
    browser.save_screenshot(str(screenshot_dir / "forecast.png"))
    assert _severe(browser) == []


@pytest.mark.parametrize(
    ("path", "notice"), [("/", "deviation-notice"), ("/forecast", "forecast-notice")]
)
def test_empty_store_shows_a_friendly_message(
    browser: Any, empty_dashboard_url: str, screenshot_dir: Path, path: str, notice: str
) -> None:
    browser.get(empty_dashboard_url + path)
    box = _wait(browser, EC.visibility_of_element_located((By.ID, notice)))
    assert "No data yet" in box.text and "askug demo" in box.text
    assert "Traceback" not in browser.page_source
    browser.save_screenshot(str(screenshot_dir / f"empty-{notice}.png"))
    assert _severe(browser) == []
