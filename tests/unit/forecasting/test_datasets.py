"""Loaders of the real development data, on small inline samples of each published format."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import polars as pl
import pytest

from forecasting import METER_TEMPERATURE
from forecasting._datasets import (
    DATASET_UNITS,
    load_cambridge_gas,
    load_de_market_area_daily,
    load_uk_nts_daily,
)
from forecasting.errors import InvalidInputError, InvalidParameterError
from warehouse import CONSUMPTION, validate_frame

UTC = dt.UTC


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(text)
    return path


def _hours(n: int, start: dt.datetime = dt.datetime(2019, 1, 1)) -> list[str]:
    return [(start + dt.timedelta(hours=h)).strftime("%Y-%m-%d %H:%M:%S") for h in range(n)]


# --- Cambridge -------------------------------------------------------------------------------


@pytest.fixture
def cambridge(tmp_path: Path) -> dict[str, Path]:
    # b1: 30 h with a 25-hour zero run (an outage) then a 2-hour zero (real zero use);
    # b2: empty cells for the first 10 hours (building-year not in the archive).
    rows = ["timestamp_utc,b1,b2"]
    for h, ts in enumerate(_hours(30)):
        if h < 25 or h in (27, 28):
            b1 = "0.0"
        else:
            b1 = f"{h}.5"
        b2 = "" if h < 10 else f"{h * 2}.0"
        rows.append(f"{ts},{b1},{b2}")
    gas = _write(tmp_path / "gas.csv.gz", "\n".join(rows) + "\n")
    weather_rows = ["timestamp_utc,air_temperature_C,rel_humidity_pct,global_irradiance_W_m2"]
    weather_rows += [f"{ts},{5 + h * 0.1:.1f},90.0,0.0" for h, ts in enumerate(_hours(28))]
    weather = _write(tmp_path / "weather.csv.gz", "\n".join(weather_rows) + "\n")
    return {"gas": gas, "weather": weather}


def test_cambridge_long_frames_follow_the_contracts(cambridge: dict[str, Path]) -> None:
    cons, temp = load_cambridge_gas(gas=cambridge["gas"], weather=cambridge["weather"])
    validate_frame(cons, CONSUMPTION)
    validate_frame(temp, METER_TEMPERATURE)
    assert cons.schema["ts"] == pl.Datetime("us", "UTC")
    assert cons.filter(pl.col("meter_id") == "b1").height == 30
    # Empty cells are absent building-years: no rows at all.
    assert cons.filter(pl.col("meter_id") == "b2").height == 20
    assert cons.filter(pl.col("meter_id") == "b2").get_column("ts").min() == dt.datetime(
        2019, 1, 1, 10, tzinfo=UTC
    )
    # Temperature per building only where the weather file has hours (28 of 30).
    assert temp.filter(pl.col("meter_id") == "b1").height == 28
    assert temp.filter(pl.col("meter_id") == "b2").height == 18
    assert "kWh" in DATASET_UNITS["cambridge"]


def test_cambridge_long_zero_runs_are_outages_short_ones_stay(cambridge: dict[str, Path]) -> None:
    cons, _ = load_cambridge_gas(gas=cambridge["gas"], weather=cambridge["weather"])
    b1 = cons.filter(pl.col("meter_id") == "b1").sort("ts")
    head = b1.head(25)
    assert head.get_column("volume_m3").null_count() == 25
    assert set(head.get_column("quality")) == {"missing"}
    short = b1.slice(27, 2)
    assert short.get_column("volume_m3").to_list() == [0.0, 0.0]
    assert set(short.get_column("quality")) == {"valid"}
    assert b1.row(25, named=True)["volume_m3"] == 25.5


def test_cambridge_window_and_building_selection(cambridge: dict[str, Path]) -> None:
    cons, temp = load_cambridge_gas(
        gas=cambridge["gas"],
        weather=cambridge["weather"],
        buildings=["b1"],
        start=dt.datetime(2019, 1, 1, 20, tzinfo=UTC),
        end=dt.datetime(2019, 1, 2, 2, tzinfo=UTC),
    )
    assert cons.get_column("meter_id").unique().to_list() == ["b1"]
    assert cons.height == 6
    # The outage spans the window start: still recognised as missing.
    assert cons.head(5).get_column("quality").to_list() == ["missing"] * 5
    assert temp.height == 6


def test_cambridge_unknown_building_and_missing_file(
    cambridge: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match=r"\['b9'\] are not in the file"):
        load_cambridge_gas(gas=cambridge["gas"], weather=cambridge["weather"], buildings=["b9"])
    with pytest.raises(InvalidInputError, match="file not found"):
        load_cambridge_gas(tmp_path / "nowhere")


# --- UK NTS ------------------------------------------------------------------------------------

_NTS = """gas_day,Applicable At,Applicable For,Data Item,Value,Generated Time,Quality Indicator
2022-03-14,20/03/2022 11:30:05,14/03/2022,"Demand Actual, NTS, D+6",5810.3,20/03/2022 12:00:00,
2022-03-14,20/03/2022 11:30:59,14/03/2022,"Demand Actual, NTS, D+6",259.1,16/04/2022 14:09:01,L
2022-03-15,21/03/2022 11:30:03,15/03/2022,"Demand Actual, NTS, D+6",250.0,21/03/2022 12:00:00,
2022-03-15,21/03/2022 11:30:03,15/03/2022,"Demand Actual, NTS, D+6",0.4,02/04/2022 09:00:00,L
2022-03-15,21/03/2022 11:30:03,15/03/2022,"Demand Actual, NTS, D+6",251.5,28/04/2022 16:08:01,L
2022-03-16,22/03/2022 11:30:03,16/03/2022,"Demand Actual, NTS, D+6",240.2,22/03/2022 12:00:00,
"""


def test_uk_nts_takes_the_latest_revision_per_gas_day(tmp_path: Path) -> None:
    demand = _write(tmp_path / "nts.csv.gz", _NTS)
    temps = _write(tmp_path / "cet.csv.gz", "date,tmean_C\n2022-03-14,7.5\n2022-03-15,8.0\n")
    cons, temp = load_uk_nts_daily(demand=demand, temperature=temps)
    validate_frame(cons, CONSUMPTION)
    validate_frame(temp, METER_TEMPERATURE)
    assert cons.get_column("meter_id").unique().to_list() == ["GB_NTS"]
    assert cons.get_column("ts").to_list() == [
        dt.datetime(2022, 3, d, tzinfo=UTC) for d in (14, 15, 16)
    ]
    assert cons.get_column("volume_m3").to_list() == [259.1, 251.5, 240.2]
    # HadCET covers two of the three days.
    assert temp.get_column("temperature_c").to_list() == [7.5, 8.0]
    assert "mcm" in DATASET_UNITS["uk_nts"]


# --- Germany -----------------------------------------------------------------------------------

_NCG_HEAD = (
    "DayOfUse;HGasSLPsyn;UnitHGasSLPsyn;HGasSLPana;UnitHGasSLPana;LGasSLPsyn;UnitLGasSLPsyn;"
    "LGasSLPana;UnitLGasSLPana;HGasRLMmT;UnitHGasRLMmT;LGasRLMmT;UnitLGasRLMmT;HGasRLMoT;"
    "UnitHGasRLMoT;LGasRLMoT;UnitLGasRLMoT;Status\n"
)
_GASPOOL_HEAD = (
    "Datum;SLPsyn_H [MWh];SLPsyn_L [MWh];SLPana_H [MWh];SLPana_L [MWh];RLMmT_H [MWh];"
    "RLMmT_L [MWh];RLMoT_H [MWh];RLMoT_L [MWh]\n"
)
_THE_HEAD = (
    "Gasday;SLPsyn H-Gas;SLPana H-Gas;SLPsyn L-Gas;SLPana L-Gas;RLMmT H-Gas;RLMmT L-Gas;"
    "RLMoT H-Gas;RLMoT L-Gas;State\n"
)


def _ncg_row(day: str, kwh: int) -> str:
    vals = ";".join(f"{kwh + k};kWh" for k in range(8))
    return f"{day};{vals};final\n"


@pytest.fixture
def germany(tmp_path: Path) -> dict[str, Path]:
    ncg = _write(
        tmp_path / "ncg.csv.gz",
        _NCG_HEAD
        + _ncg_row("30.09.2016", 1_000_000)  # before GASPOOL data: not part of "germany"
        + _ncg_row("01.10.2016", 2_000_000)
        + _ncg_row("02.10.2016", 3_000_000)
        + _ncg_row("30.09.2021", 4_000_000),
    )
    gaspool = _write(
        tmp_path / "gaspool.csv.gz",
        _GASPOOL_HEAD
        + "01.10.2016;100;101;102;103;104;105;106;107\n"
        + "02.10.2016;;201;202;203;204;205;206;207\n"  # empty SLPsyn_H cell
        + "30.09.2021;300;301;302;303;304;305;306;307\n",
    )
    the = _write(
        tmp_path / "the.csv.gz",
        _THE_HEAD
        + "02/10/2021;1,329,253,656;254,943,960;245,882,616;86,232,024;;;;;preliminary\n"
        + "01/10/2021;469,806,696;91,947,888;109,932,216;30,113,544;1,054,848,720;"
        "189,006,096;58,543,425;2,384,881;final\n",
    )
    temp = _write(
        tmp_path / "temp.csv.gz", "date,temperature_C\n2016-10-01,11.2\n2021-10-01,12.5\n"
    )
    return {"netconnect": ncg, "gaspool": gaspool, "the": the, "temperature": temp}


def test_germany_sums_market_areas_in_mwh(germany: dict[str, Path]) -> None:
    cons, temp = load_de_market_area_daily(**germany)  # type: ignore[arg-type]
    validate_frame(cons, CONSUMPTION)
    validate_frame(temp, METER_TEMPERATURE)
    assert sorted(cons.get_column("meter_id").unique()) == [
        "DE/SLPana_H",
        "DE/SLPana_L",
        "DE/SLPsyn_H",
        "DE/SLPsyn_L",
    ]
    syn_h = cons.filter(pl.col("meter_id") == "DE/SLPsyn_H").sort("ts")
    days = [t.date() for t in syn_h.get_column("ts")]
    assert days == [
        dt.date(2016, 10, 1),
        dt.date(2016, 10, 2),
        dt.date(2021, 9, 30),
        dt.date(2021, 10, 1),
        dt.date(2021, 10, 2),
    ]
    vol = syn_h.get_column("volume_m3").to_list()
    # NCG kWh -> MWh plus GASPOOL MWh.
    assert vol[0] == pytest.approx(2_000.0 + 100)
    # GASPOOL cell empty: the German sum is unknown, not NCG alone.
    assert vol[1] is None
    assert syn_h.get_column("quality").to_list()[1] == "missing"
    assert vol[2] == pytest.approx(4_000.0 + 300)
    # THE: thousands separators, kWh -> MWh; preliminary -> suspect.
    assert vol[3] == pytest.approx(469_806.696)
    assert vol[4] == pytest.approx(1_329_253.656)
    assert syn_h.get_column("quality").to_list()[3:] == ["valid", "suspect"]
    # Class order differs between formats: SLPana_L in THE is the 4th number.
    ana_l = cons.filter((pl.col("meter_id") == "DE/SLPana_L") & (pl.col("ts").dt.year() == 2021))
    assert ana_l.sort("ts").get_column("volume_m3").to_list()[1:] == pytest.approx(
        [30_113.544, 86_232.024]
    )
    assert temp.height == 8  # two temperature days × four classes
    assert "MWh" in DATASET_UNITS["de_market_area"]


def test_germany_single_area_and_rlm_class(germany: dict[str, Path]) -> None:
    cons, _ = load_de_market_area_daily(
        **germany,  # type: ignore[arg-type]
        classes=["RLMmT_L"],
        market_area="THE",
    )
    rows = cons.sort("ts").rows()
    assert rows[0][0] == "THE/RLMmT_L"
    assert rows[0][2] == pytest.approx(189_006.096)
    # The latest THE day has empty RLM columns.
    assert rows[1][2] is None and rows[1][3] == "missing"
    ncg, _ = load_de_market_area_daily(**germany, classes=["SLPsyn_H"], market_area="NCG")  # type: ignore[arg-type]
    assert ncg.height == 4
    assert ncg.sort("ts").get_column("volume_m3")[0] == pytest.approx(1_000.0)


def test_germany_rejects_unknown_class_and_area(germany: dict[str, Path]) -> None:
    with pytest.raises(InvalidParameterError, match="classes"):
        load_de_market_area_daily(**germany, classes=["SLP_X"])  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="market_area"):
        load_de_market_area_daily(**germany, market_area="NL")  # type: ignore[arg-type]
