"""Pure figure functions for the gas balance, limit discipline and normalisation.

Frame in, ``plotly.graph_objects.Figure`` out; no data access, no state, so the
dashboard and the notebooks draw the same pictures.  Plotly is imported lazily.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import polars as pl

from analytics.errors import AnalyticsError

if TYPE_CHECKING:
    import plotly.graph_objects as go


def balance_figure(balance: pl.DataFrame, node_id: str) -> go.Figure:
    """Inflow against consumption of one node per period, imbalance % on the right axis.

    ``balance`` is :func:`analytics.gas_balance` output.  Hovering a bar shows how much
    of the consumer data behind it is estimated or missing.
    """
    import plotly.graph_objects as go

    rows = balance.filter(pl.col("node_id") == node_id).sort("ts")
    if rows.height == 0:
        raise AnalyticsError(f"node {node_id!r} has no balance rows; pick one of {balance['node_id'].unique().to_list()[:5]}")
    x = rows.get_column("ts").to_list()
    custom = rows.select("consumer_estimated_pct", "consumer_missing_pct").to_numpy()
    fig = go.Figure()
    fig.add_bar(x=x, y=rows.get_column("inflow_m3").to_list(), name="metered inflow, m³")
    fig.add_bar(
        x=x, y=rows.get_column("consumed_m3").to_list(), name="consumers, m³", customdata=custom,
        hovertemplate="%{y:,.1f} m³<br>estimated %{customdata[0]:.1f} %<br>missing %{customdata[1]:.1f} %",
    )
    fig.add_scatter(
        x=x, y=rows.get_column("imbalance_pct").to_list(), name="imbalance, % of inflow", yaxis="y2",
        mode="lines+markers",
    )
    fig.update_layout(
        title=f"Gas balance of {node_id}",
        barmode="group",
        yaxis={"title": "m³"},
        yaxis2={"title": "imbalance %", "overlaying": "y", "side": "right", "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def limit_figure(use: pl.DataFrame, status: pl.DataFrame, meter_id: str) -> go.Figure:
    """Running total of one consumer's gas month against its limit and plan, with the forecast.

    Parameters
    ----------
    use
        :func:`analytics.gas_day_use` rows of the meter (actual gas days).
    status
        :func:`analytics.monthly_limit_status` output (the meter's row is used).
    meter_id
        The consumer.
    """
    import plotly.graph_objects as go

    rows = status.filter(pl.col("meter_id") == meter_id)
    if rows.height == 0:
        raise AnalyticsError(f"consumer {meter_id!r} has no limit status; pick a metering point with a contract")
    s = rows.row(0, named=True)
    month, as_of = s["month"], s["as_of"]
    end = (month + dt.timedelta(days=32)).replace(day=1)
    actual = (
        use.filter((pl.col("meter_id") == meter_id) & pl.col("gas_day").is_between(month, as_of, closed="left"))
        .sort("gas_day")
        .with_columns(pl.col("volume_m3").fill_null(0.0).cum_sum().alias("cum"))
    )
    fig = go.Figure()
    fig.add_scatter(
        x=actual.get_column("gas_day").to_list(), y=actual.get_column("cum").to_list(), name="actual, m³",
        mode="lines+markers",
    )
    if s["forecast_m3"] is not None and as_of < end:
        last = as_of - dt.timedelta(days=1)
        fig.add_scatter(
            x=[last, end - dt.timedelta(days=1)], y=[s["actual_m3"], s["forecast_m3"]], name="forecast, m³",
            mode="lines", line={"dash": "dash"},
        )
    for value, name, colour in ((s["limit_m3"], "monthly limit", "#d62728"), (s["plan_m3"], "plan", "#7f7f7f")):
        if value is not None:
            fig.add_hline(y=value, line={"color": colour, "dash": "dot"}, annotation_text=f"{name} {value:,.0f} m³")
    if s["exceed_day"] is not None:
        fig.add_vline(x=s["exceed_day"], line={"color": "#d62728"})
    fig.update_layout(title=s["statement"] or f"{meter_id}: within its monthly limit", yaxis={"title": "m³ since the month began"})
    return fig


def normalised_figure(aggregated: pl.DataFrame, *, by: str = "category") -> go.Figure:
    """Metered against weather-normalised volume per group (:func:`aggregate_normalised`)."""
    import plotly.graph_objects as go

    rows = aggregated.filter(pl.col(by) != "(all)").group_by(by).agg(
        pl.col("volume_m3").sum(), pl.col("normalised_m3").sum()
    ).sort(by)
    fig = go.Figure()
    fig.add_bar(x=rows.get_column(by).to_list(), y=rows.get_column("volume_m3").to_list(), name="metered, m³")
    fig.add_bar(x=rows.get_column(by).to_list(), y=rows.get_column("normalised_m3").to_list(), name="normal year, m³")
    fig.update_layout(title=f"Consumption at normal-year temperature, by {by}", barmode="group", yaxis={"title": "m³"})
    return fig
