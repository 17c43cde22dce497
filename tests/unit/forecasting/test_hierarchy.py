"""Hierarchical reconciliation: coherence for every method, bottom-up identity, MinT gains."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from forecasting import (
    InvalidInputError,
    InvalidParameterError,
    aggregate,
    reconcile,
    summing_matrix,
)
from forecasting._hierarchy import METHODS, shrinkage_intensity

T0 = dt.datetime(2025, 12, 1, tzinfo=dt.UTC)
TREE = pl.DataFrame(
    {
        "meter_id": [f"m{k}" for k in range(8)],
        "branch_id": ["b1", "b1", "b1", "b2", "b2", "b3", "b3", "b3"],
        "company_id": ["c1", "c1", "c1", "c1", "c1", "c2", "c2", "c2"],
    }
)


def _long(
    nodes: pl.DataFrame, values: np.ndarray, name: str, ts0: dt.datetime = T0
) -> pl.DataFrame:
    """Nodes × steps matrix to a long frame."""
    n, t = values.shape
    ts = [ts0 + dt.timedelta(hours=k) for k in range(t)]
    return pl.DataFrame(
        {
            "level": np.repeat(nodes["level"].to_numpy(), t),
            "node_id": np.repeat(nodes["node_id"].to_numpy(), t),
            "ts": ts * n,
            name: values.ravel(),
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("us"))


def _synthetic(seed: int = 0, steps: int = 24, train: int = 300):
    """Truth for 8 meters, base forecasts with accurate meters and noisy parents, and
    residuals of the same error process on a separate training period."""
    rng = np.random.default_rng(seed)
    h = summing_matrix(TREE, total=True)
    n, m = h.S.shape
    sd = np.where(np.arange(n) < n - m, 6.0, 1.0)  # aggregates 6 m³, meters 1 m³ error sd

    def errors(k: int) -> np.ndarray:
        common = rng.normal(0.0, 1.0, (1, k))  # some shared error (weather)
        own = rng.normal(0.0, 1.0, (n, k))
        return sd[:, None] * (0.8 * own + 0.6 * common)

    bottom = 20.0 + 5.0 * rng.random((m, steps))
    truth = h.S @ bottom
    base = truth + errors(steps)
    half = 1.2816 * sd[:, None] * np.ones((1, steps))
    forecasts = _long(h.nodes, base, "volume_m3").with_columns(
        pl.Series("volume_m3_lo_80", (base - half).ravel()),
        pl.Series("volume_m3_hi_80", (base + half).ravel()),
    )
    residuals = _long(h.nodes, -errors(train), "residual_m3", T0 - dt.timedelta(hours=train))
    return h, truth, forecasts, residuals


def _matrix(frame: pl.DataFrame, h, column: str = "volume_m3") -> np.ndarray:
    order = h.nodes.with_row_index("_r")
    f = frame.join(order, on=["level", "node_id"]).sort("_r", "ts")
    return f[column].to_numpy().reshape(h.S.shape[0], -1)


def test_summing_matrix_structure() -> None:
    h = summing_matrix(TREE, total=True)
    assert h.nodes["level"].to_list()[:6] == [
        "total",
        "branch_id",
        "branch_id",
        "branch_id",
        "company_id",
        "company_id",
    ]
    assert h.S.shape == (1 + 3 + 2 + 8, 8) and h.n_aggregates == 6
    assert np.array_equal(h.S[-8:], np.eye(8))
    assert h.S[0].sum() == 8 and h.S[1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    with pytest.raises(InvalidInputError, match="one row per"):
        summing_matrix(pl.concat([TREE, TREE.head(1)]))
    with pytest.raises(InvalidInputError, match="null"):
        summing_matrix(TREE.with_columns(pl.lit(None, dtype=pl.String).alias("company_id")))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_is_coherent_with_ordered_intervals(method: str) -> None:
    h, _, forecasts, residuals = _synthetic()
    out = reconcile(forecasts, TREE, method=method, residuals=residuals, total=True)  # type: ignore[arg-type]
    assert out.columns == [
        "level",
        "node_id",
        "ts",
        "volume_m3",
        "volume_m3_lo_80",
        "volume_m3_hi_80",
        "method",
    ]
    assert out.height == forecasts.height and set(out["method"]) == {method}
    y = _matrix(out, h)
    bottom = y[-8:]
    assert np.abs(h.S @ bottom - y).max() < 1e-9
    lo, hi = _matrix(out, h, "volume_m3_lo_80"), _matrix(out, h, "volume_m3_hi_80")
    assert (lo <= y + 1e-12).all() and (y <= hi + 1e-12).all() and (lo >= 0).all()


def test_bottom_up_reproduces_summed_children() -> None:
    h, _, forecasts, _ = _synthetic()
    out = reconcile(forecasts, h, method="bottom_up")
    base = _matrix(forecasts, h)
    y = _matrix(out, h)
    assert np.allclose(y[-8:], base[-8:], atol=1e-12)  # meters unchanged
    assert np.allclose(y, h.S @ base[-8:], atol=1e-9)
    # the meters keep their intervals; a branch's interval is the root-sum-square of its
    # meters' (independent errors without residuals)
    assert np.allclose(
        _matrix(out, h, "volume_m3_hi_80")[-8:], _matrix(forecasts, h, "volume_m3_hi_80")[-8:]
    )
    b1 = out.filter(pl.col("node_id") == "b1").sort("ts")
    half = (b1["volume_m3_hi_80"] - b1["volume_m3"]).to_numpy()
    assert np.allclose(half, 1.2816 * np.sqrt(3.0))
    # the same via aggregate(): summing the meters' forecasts up the tree
    meters = forecasts.filter(pl.col("level") == "meter_id").rename({"node_id": "meter_id"})
    agg = aggregate(meters.drop("level"), TREE, total=True)
    joined = agg.join(out, on=["level", "node_id", "ts"], suffix="_bu")
    assert joined.height == out.height
    assert np.allclose(joined["volume_m3"], joined["volume_m3_bu"], atol=1e-9)


def test_mint_shrink_beats_base_forecasts_with_noisy_parents() -> None:
    mse: dict[str, list[float]] = {m: [] for m in ("base", *METHODS)}
    for seed in range(5):
        h, truth, forecasts, residuals = _synthetic(seed)
        mse["base"].append(float(np.mean((_matrix(forecasts, h) - truth) ** 2)))
        for method in METHODS:
            out = reconcile(forecasts, h, method=method, residuals=residuals)  # type: ignore[arg-type]
            mse[method].append(float(np.mean((_matrix(out, h) - truth) ** 2)))
    mean = {k: float(np.mean(v)) for k, v in mse.items()}
    assert mean["mint_shrink"] < 0.5 * mean["base"]
    assert mean["mint_shrink"] < mean["ols"]
    assert mean["mint_shrink"] <= 1.05 * mean["wls_var"]


def test_interval_coverage_of_reconciled_parents() -> None:
    hits, total = 0, 0
    for seed in range(20):
        h, truth, forecasts, residuals = _synthetic(seed)
        out = reconcile(forecasts, h, method="mint_shrink", residuals=residuals)
        lo, hi = _matrix(out, h, "volume_m3_lo_80"), _matrix(out, h, "volume_m3_hi_80")
        inside = (truth >= lo) & (truth <= hi)
        hits += int(inside.sum())
        total += inside.size
    assert 0.7 <= hits / total <= 0.9


def test_shrinkage_intensity_limits() -> None:
    rng = np.random.default_rng(1)
    independent = rng.normal(size=(40, 30))
    shared = rng.normal(size=(400, 1)) + 0.1 * rng.normal(size=(400, 30))
    assert shrinkage_intensity(independent) > 0.5  # little signal off the diagonal
    assert shrinkage_intensity(shared) < 0.05  # strong correlation is kept


def test_bad_input() -> None:
    h, _, forecasts, residuals = _synthetic()
    with pytest.raises(InvalidParameterError, match="residuals"):
        reconcile(forecasts, h, method="mint_shrink")
    with pytest.raises(InvalidParameterError, match="method"):
        reconcile(forecasts, h, method="topdown")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="lack"):
        reconcile(
            forecasts.filter(~((pl.col("node_id") == "b2") & (pl.col("ts") == T0))), h, method="ols"
        )
    with pytest.raises(InvalidInputError, match="not in the hierarchy"):
        reconcile(forecasts, TREE, method="ols")  # total=False: the 'total' node is unknown
    with pytest.raises(InvalidParameterError, match="at least 3"):
        reconcile(forecasts, h, method="mint_shrink", residuals=residuals.head(20))
