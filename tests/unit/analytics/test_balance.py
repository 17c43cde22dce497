"""Gas balance over a hand-built network: every sum is known by construction."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import AnalyticsError, gas_balance, read_inflow_file, validate_inflow
from analytics._balance import node_closure
from warehouse import Store, open_store

UTC = dt.UTC
T0 = dt.datetime(2022, 1, 10, tzinfo=UTC)


def _hours(n: int, start: dt.datetime = T0) -> list[dt.datetime]:
    return [start + dt.timedelta(hours=h) for h in range(n)]


def _network(time_zone: str = "UTC", contract_hour: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Station S feeds GDP A (meters m1, m2) and GDP B (m3); S itself feeds m4."""
    nodes = pl.DataFrame(
        {
            "node_id": ["S", "A", "B"],
            "parent_node_id": [None, "S", "S"],
            "kind": ["station", "gdp", "gdp"],
            "time_zone": [time_zone] * 3,
            "contract_hour": [contract_hour] * 3,
        }
    )
    meters = pl.DataFrame({"meter_id": ["m1", "m2", "m3", "m4"], "node_id": ["A", "A", "B", "S"]})
    return nodes, meters


def _consumption(hours: list[dt.datetime], rates: dict[str, float]) -> pl.DataFrame:
    rows = [(m, t, r, "valid") for m, r in rates.items() for t in hours]
    return pl.DataFrame(
        rows,
        schema={"meter_id": pl.String, "ts": pl.Datetime("us", "UTC"), "volume_m3": pl.Float64, "quality": pl.String},
        orient="row",
    )


def _inflow(hours: list[dt.datetime], rates: dict[str, float]) -> pl.DataFrame:
    rows = [(n, t, r, "valid") for n, r in rates.items() for t in hours]
    return pl.DataFrame(
        rows,
        schema={"node_id": pl.String, "ts": pl.Datetime("us", "UTC"), "volume_m3": pl.Float64, "quality": pl.String},
        orient="row",
    )


RATES = {"m1": 1.0, "m2": 2.0, "m3": 4.0, "m4": 0.5}
INFLOW = {"A": 3.3, "B": 4.0, "S": 8.0}


def test_hourly_balance_sums_the_subtree() -> None:
    nodes, meters = _network()
    hours = _hours(3)
    out = gas_balance(_consumption(hours, RATES), _inflow(hours, INFLOW), nodes=nodes, meters=meters, freq="hour")
    assert out.height == 9
    first = {r["node_id"]: r for r in out.filter(pl.col("ts") == T0).iter_rows(named=True)}
    assert first["A"]["consumed_m3"] == pytest.approx(3.0)
    assert first["B"]["consumed_m3"] == pytest.approx(4.0)
    assert first["S"]["consumed_m3"] == pytest.approx(7.5)  # the whole subtree
    assert first["S"]["meters"] == 4 and first["A"]["meters"] == 2
    assert first["A"]["imbalance_m3"] == pytest.approx(0.3)
    assert first["A"]["imbalance_pct"] == pytest.approx(100 * 0.3 / 3.3)
    assert first["B"]["imbalance_m3"] == pytest.approx(0.0)
    assert first["S"]["children_inflow_m3"] == pytest.approx(7.3)
    assert first["A"]["children_inflow_m3"] is None
    assert all(out.get_column("complete"))
    assert out.get_column("hours").to_list() == [1] * 9


def test_daily_and_monthly_periods_use_the_gas_day() -> None:
    # Moscow is UTC+3 with contract hour 10: gas day D starts at 07:00 UTC on D.
    nodes, meters = _network("Europe/Moscow", 10)
    hours = _hours(48, dt.datetime(2022, 1, 10, 7, tzinfo=UTC))
    cons, inflow = _consumption(hours, RATES), _inflow(hours, INFLOW)
    day = gas_balance(cons, inflow, nodes=nodes, meters=meters, freq="day")
    a = day.filter(pl.col("node_id") == "A")
    assert a.get_column("period").to_list() == [dt.date(2022, 1, 10), dt.date(2022, 1, 11)]
    assert a.get_column("ts").to_list() == [hours[0], hours[24]]
    assert a.get_column("consumed_m3").to_list() == pytest.approx([72.0, 72.0])
    assert a.get_column("inflow_m3").to_list() == pytest.approx([79.2, 79.2])
    month = gas_balance(cons, inflow, nodes=nodes, meters=meters, freq="month")
    s = month.filter(pl.col("node_id") == "S").row(0, named=True)
    assert s["period"] == dt.date(2022, 1, 1) and s["hours"] == 48
    assert s["consumed_m3"] == pytest.approx(7.5 * 48)
    assert s["imbalance_m3"] == pytest.approx(0.5 * 48)


def test_explicit_gas_day_range_selects_whole_days() -> None:
    nodes, meters = _network("Europe/London", 5)
    hours = _hours(24 * 4, dt.datetime(2022, 1, 9, tzinfo=UTC))
    out = gas_balance(
        _consumption(hours, RATES), _inflow(hours, INFLOW), nodes=nodes, meters=meters, freq="day",
        start=dt.date(2022, 1, 10), end=dt.date(2022, 1, 12),
    )
    assert sorted(set(out.get_column("period").to_list())) == [dt.date(2022, 1, 10), dt.date(2022, 1, 11)]
    assert (out.get_column("hours") == 24).all()
    assert out.filter(pl.col("node_id") == "B").get_column("consumed_m3").to_list() == pytest.approx([96.0, 96.0])


def test_dst_gas_day_has_23_hours() -> None:
    nodes, meters = _network("Europe/Berlin", 6)
    # clocks go forward at 02:00 on 27 March: the gas day that starts 26 March 06:00 is short
    hours = _hours(24 * 3, dt.datetime(2022, 3, 25, tzinfo=UTC))
    out = gas_balance(
        _consumption(hours, RATES), _inflow(hours, INFLOW), nodes=nodes, meters=meters, freq="day",
        start=dt.date(2022, 3, 26), end=dt.date(2022, 3, 27),
    )
    a = out.filter(pl.col("node_id") == "A").row(0, named=True)
    assert a["hours"] == 23 and a["consumed_m3"] == pytest.approx(3.0 * 23)


def test_estimated_and_missing_consumer_data_are_shown() -> None:
    nodes, meters = _network()
    hours = _hours(4)
    cons = _consumption(hours, RATES).with_columns(
        pl.when((pl.col("meter_id") == "m1") & (pl.col("ts") == hours[0]))
        .then(pl.lit("estimated"))
        .otherwise(pl.col("quality"))
        .alias("quality"),
    )
    # m2 has no row at all for the last hour, m3 a null (missing) value.
    cons = cons.filter(~((pl.col("meter_id") == "m2") & (pl.col("ts") == hours[3]))).with_columns(
        pl.when((pl.col("meter_id") == "m3") & (pl.col("ts") == hours[1]))
        .then(None)
        .otherwise(pl.col("volume_m3"))
        .alias("volume_m3")
    )
    inflow = _inflow(hours, INFLOW).filter(~((pl.col("node_id") == "B") & (pl.col("ts") == hours[2])))
    out = gas_balance(cons, inflow, nodes=nodes, meters=meters, freq="day")
    rows = {r["node_id"]: r for r in out.iter_rows(named=True)}
    assert rows["A"]["consumer_estimated_pct"] == pytest.approx(100 * 1 / 8)
    assert rows["A"]["consumer_missing_pct"] == pytest.approx(100 * 1 / 8)
    assert rows["A"]["consumed_m3"] == pytest.approx(4 * 1.0 + 3 * 2.0)
    assert rows["B"]["consumer_missing_pct"] == pytest.approx(25.0)
    assert rows["B"]["inflow_missing_hours"] == 1
    assert rows["S"]["consumer_missing_pct"] == pytest.approx(100 * 2 / 16)
    # a child without full inflow is fine; the sum covers the inflow hours it has
    assert rows["S"]["children_inflow_m3"] == pytest.approx(4 * 3.3 + 3 * 4.0)
    assert not any(r["complete"] for r in rows.values())


def test_node_without_any_inflow_has_null_balance() -> None:
    nodes, meters = _network()
    hours = _hours(2)
    out = gas_balance(_consumption(hours, RATES), _inflow(hours, {"A": 3.0}), nodes=nodes, meters=meters, freq="hour")
    b = out.filter(pl.col("node_id") == "B")
    assert b.get_column("inflow_m3").null_count() == 2
    assert b.get_column("imbalance_m3").null_count() == 2
    assert b.get_column("consumed_m3").to_list() == pytest.approx([4.0, 4.0])
    assert out.filter(pl.col("node_id") == "S").get_column("children_inflow_m3").null_count() == 2


@settings(max_examples=15, deadline=None)
@given(
    parents=st.lists(st.integers(min_value=0, max_value=10), min_size=1, max_size=8),
    assign=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=12),
    volumes=st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=12, max_size=12),
)
def test_every_node_balances_its_whole_subtree(parents: list[int], assign: list[int], volumes: list[float]) -> None:
    # node k's parent is one of the nodes before it (or none): always a tree
    ids = [f"N{k}" for k in range(len(parents) + 1)]
    parent_of = [None] + [ids[p % (k + 1)] if p <= k else None for k, p in enumerate(parents)]
    nodes = pl.DataFrame({"node_id": ids, "parent_node_id": parent_of, "kind": ["gdp"] * len(ids)},
                         schema={"node_id": pl.String, "parent_node_id": pl.String, "kind": pl.String})
    meter_ids = [f"m{j}" for j in range(len(assign))]
    meters = pl.DataFrame({"meter_id": meter_ids, "node_id": [ids[a % len(ids)] for a in assign]})
    vol = dict(zip(meter_ids, volumes, strict=False))
    cons = _consumption([T0], vol)
    out = gas_balance(cons, _inflow([T0], {i: 1.0 for i in ids}), nodes=nodes, meters=meters, freq="hour")

    def subtree(node: str) -> set[str]:
        kids = {ids[k] for k in range(len(ids)) if parent_of[k] == node}
        return {node}.union(*(subtree(k) for k in kids))

    for row in out.iter_rows(named=True):
        members = subtree(row["node_id"])
        expected = [vol[m] for m, n in zip(meter_ids, meters.get_column("node_id"), strict=True) if n in members]
        assert row["meters"] == len(expected)
        if expected:
            assert row["consumed_m3"] == pytest.approx(sum(expected))
        else:
            assert row["consumed_m3"] is None


def test_bad_input_is_refused_with_a_clear_message() -> None:
    nodes, meters = _network()
    hours = _hours(2)
    cons, inflow = _consumption(hours, RATES), _inflow(hours, INFLOW)
    with pytest.raises(AnalyticsError, match="reversed"):
        gas_balance(cons, inflow, nodes=nodes, meters=meters, start=dt.date(2022, 2, 1), end=dt.date(2022, 1, 1))
    with pytest.raises(AnalyticsError, match="empty"):
        gas_balance(cons, inflow, nodes=nodes, meters=meters, start=dt.date(2022, 2, 1), end=dt.date(2022, 2, 1))
    with pytest.raises(AnalyticsError, match="freq"):
        gas_balance(cons, inflow, nodes=nodes, meters=meters, freq="week")  # type: ignore[arg-type]
    cyclic = nodes.with_columns(pl.when(pl.col("node_id") == "S").then(pl.lit("A")).otherwise(pl.col("parent_node_id")).alias("parent_node_id"))
    with pytest.raises(AnalyticsError, match="cycle"):
        gas_balance(cons, inflow, nodes=cyclic, meters=meters)
    dangling = nodes.with_columns(pl.when(pl.col("node_id") == "S").then(pl.lit("X")).otherwise(pl.col("parent_node_id")).alias("parent_node_id"))
    with pytest.raises(AnalyticsError, match="not a node"):
        node_closure(dangling)
    with pytest.raises(AnalyticsError, match="negative"):
        validate_inflow(inflow.with_columns(pl.lit(-1.0).alias("volume_m3")))
    with pytest.raises(AnalyticsError, match="repeat"):
        validate_inflow(pl.concat([inflow, inflow.head(1)]))
    with pytest.raises(AnalyticsError, match="UTC"):
        validate_inflow(inflow.with_columns(pl.col("ts").dt.replace_time_zone(None)))
    with pytest.raises(AnalyticsError, match="no consumption and no inflow"):
        gas_balance(cons.clear(), inflow.clear(), nodes=nodes, meters=meters)


def test_read_inflow_file_csv_and_parquet(tmp_path: Path) -> None:
    good = tmp_path / "inflow.csv"
    good.write_text("node_id,ts,volume_m3\nA,2022-01-10T00:00:00Z,3.5\nA,2022-01-10T01:00:00Z,\n")
    frame = read_inflow_file(good)
    assert frame.get_column("quality").to_list() == ["valid", "missing"]
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")
    frame.write_parquet(tmp_path / "inflow.parquet")
    assert read_inflow_file(tmp_path / "inflow.parquet").equals(frame)
    bad = tmp_path / "bad.csv"
    bad.write_text("node_id,ts,volume_m3\nA,2022-01-10T00:00:00Z,3.5\nA,2022-01-10T01:00:00Z,lots\n")
    with pytest.raises(AnalyticsError, match=r"bad.csv line 3: volume_m3 'lots' is not a number"):
        read_inflow_file(bad)
    bad.write_text("node_id,ts,volume_m3\nA,yesterday,3.5\n")
    with pytest.raises(AnalyticsError, match=r"line 2: ts 'yesterday'"):
        read_inflow_file(bad)
    with pytest.raises(AnalyticsError, match="does not exist"):
        read_inflow_file(tmp_path / "nope.csv")


def test_balance_figure_draws_inflow_consumption_and_imbalance() -> None:
    from analytics import balance_figure

    nodes, meters = _network()
    hours = _hours(3)
    out = gas_balance(_consumption(hours, RATES), _inflow(hours, INFLOW), nodes=nodes, meters=meters, freq="hour")
    fig = balance_figure(out, "A")
    assert [t.name for t in fig.data] == ["metered inflow, m³", "consumers, m³", "imbalance, % of inflow"]
    assert list(fig.data[1].y) == pytest.approx([3.0, 3.0, 3.0])
    with pytest.raises(AnalyticsError, match="no balance rows"):
        balance_figure(out, "Z")


# --- the stored inflow (table node_inflow) ---------------------------------------------------


def _store_with_network(path: Path, *, inflow: bool = True) -> Store:
    """A DuckDB store holding the hand-built network, three UTC days (10-12 January) of
    hourly archive and (optionally) the nodes' inflow in ``node_inflow``."""
    store = open_store(path=path)
    store.migrate()
    nodes, meters = _network()
    hours = _hours(72, dt.datetime(2022, 1, 10, tzinfo=UTC))
    store.write("companies", pl.DataFrame({"company_id": ["C"], "name": ["Gas Co"], "time_zone": ["UTC"], "contract_hour": [0]}))
    store.write("branches", pl.DataFrame({"branch_id": ["B1"], "company_id": ["C"], "name": ["North"]}))
    store.write("network_nodes", nodes.select("node_id", "parent_node_id", "kind").with_columns(
        pl.lit("B1").alias("branch_id"), pl.col("node_id").alias("name")))
    store.write("metering_points", meters.with_columns(
        pl.lit("B1").alias("branch_id"), pl.col("meter_id").alias("name"), pl.lit("gas").alias("resource"),
        pl.lit("household").alias("category"), pl.lit("UTC").alias("time_zone"), pl.lit(0).alias("contract_hour")))
    store.write("hourly_archive", _consumption(hours, RATES).with_columns(pl.lit("archive").alias("source")))
    if inflow:
        store.write("node_inflow", _inflow(hours, INFLOW).with_columns(pl.lit("archive").alias("source")))
    return store


def test_balance_from_store_reads_the_stored_inflow(tmp_path: Path) -> None:
    from analytics import balance_from_store

    with _store_with_network(tmp_path / "s.duckdb") as store:
        # no range: the gas days strictly inside the data (the first and last UTC days
        # are dropped, as they cut the gas days of zones away from UTC): 11 January
        daily = balance_from_store(store, freq="day")
        hourly = balance_from_store(store, freq="hour", node_ids=["A"])
        override = balance_from_store(
            store, _inflow(_hours(48, dt.datetime(2022, 1, 10, tzinfo=UTC)), {"A": 3.0, "B": 4.0, "S": 7.5}),
            freq="day", start=dt.date(2022, 1, 10), end=dt.date(2022, 1, 12),
        )
    assert daily.height == 3 and set(daily.get_column("period")) == {dt.date(2022, 1, 11)}
    a = daily.filter(pl.col("node_id") == "A").row(0, named=True)
    assert a["inflow_m3"] == pytest.approx(3.3 * 24) and a["consumed_m3"] == pytest.approx(3.0 * 24)
    assert a["imbalance_pct"] == pytest.approx(100 * 0.3 / 3.3) and a["complete"]
    s = daily.filter(pl.col("node_id") == "S").row(0, named=True)
    assert s["children_inflow_m3"] == pytest.approx(7.3 * 24) and s["imbalance_m3"] == pytest.approx(0.5 * 24)
    assert hourly.height == 72 and set(hourly.get_column("node_id")) == {"A"}
    assert hourly.get_column("inflow_m3").to_list() == pytest.approx([3.3] * 72)
    # a file's inflow replaces the stored one
    assert override.height == 6
    assert override.get_column("imbalance_m3").to_list() == pytest.approx([0.0] * 6)


def test_balance_from_store_without_stored_inflow_says_how_to_get_it(tmp_path: Path) -> None:
    from analytics import balance_from_store

    with _store_with_network(tmp_path / "s.duckdb", inflow=False) as store:
        with pytest.raises(AnalyticsError, match=r"no node inflow .*--no-inflow.*--inflow FILE"):
            balance_from_store(store, freq="day")
        # with an explicit file it works on the same store
        out = balance_from_store(store, _inflow(_hours(24, dt.datetime(2022, 1, 10, tzinfo=UTC)), INFLOW), freq="hour")
    assert out.filter(pl.col("inflow_m3").is_not_null()).height == 3 * 24
