"""Coherent forecasts over the metering hierarchy: meters → branches → companies (and
categories), so every parent equals the sum of its children.

Notation (Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, ch. 11;
Wickramasuriya, Athanasopoulos & Hyndman 2019, "Optimal forecast reconciliation"):
``y = S b`` with ``b`` the ``m`` bottom series (metering points) and the **summing
matrix** ``S = [A; I_m]`` (one row per node: the aggregates first, then the meters).
Given base forecasts ``ŷ`` of *every* node, made independently, the reconciled forecast is
the projection ``ỹ = P ŷ`` with

    P = S G,   G = (Sᵀ W⁻¹ S)⁻¹ Sᵀ W⁻¹

computed here in the equivalent constraint form ``P = I − W U (Uᵀ W U)⁻¹ Uᵀ`` with
``Uᵀ = [I, −A]`` (only an aggregates × aggregates system is solved).  ``W`` is

* ``"bottom_up"``: none, ``G = [0, I]`` (sum the meters' forecasts);
* ``"ols"``: ``W = I``;
* ``"wls_struct"``: ``W = diag(S 1)`` (structural scaling: a node's error variance is
  taken proportional to the number of meters under it; needs no residuals);
* ``"wls_var"``: ``W = diag`` of the residual variances;
* ``"mint_shrink"``: the residual covariance shrunk towards its diagonal with the
  Schäfer–Strimmer (2005) intensity ``λ = Σ_{i≠j} Var(r_ij) / Σ_{i≠j} r_ij²`` on the
  standardised residuals (as in R ``hts``/``forecast``: errors assumed mean-zero, so
  moments are uncentred), ``W = λ diag(Σ̂) + (1 − λ) Σ̂``.

Residuals (actual − forecast per node and step, in-sample or from a backtest) are needed
for ``wls_var`` and ``mint_shrink`` and recommended for all methods, because they give
the error correlation the intervals use.

**Intervals.**  Each node's base interval gives a step-wise error scale
``σ = (hi − lo) / (2 z₀.₉)`` (Gaussian assumption, ``z₀.₉ = 1.2816``).  The reconciled
error covariance at a step is ``P Σ_t Pᵀ`` with ``Σ_t = diag(σ_t) C diag(σ_t)`` and ``C``
the Schäfer–Strimmer-shrunk error **correlation** of the residuals (whatever the
method), or the identity without residuals (then a parent's bottom-up interval assumes
independent meters, which is too narrow if meters share weather errors).  The reconciled
half-width ``z₀.₉ √(P Σ_t Pᵀ)_ii`` is split below/above the reconciled mean in the base
interval's proportions (keeping its skew).  Under bottom-up the meters' intervals are
unchanged.  Means are *not* clipped at zero (clipping would break coherence); lower
bounds are.  Dense matrices: meant for hierarchies of up to a few thousand nodes per
call (reconcile company by company).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np
import polars as pl

from forecasting.errors import InvalidInputError, InvalidParameterError

Method = Literal["bottom_up", "ols", "wls_struct", "wls_var", "mint_shrink"]
METHODS: Final[tuple[str, ...]] = get_args(Method)
#: Standard-normal quantile of the 80 % central interval's upper bound.
Z80: Final = 1.2815515655446004
TOTAL: Final = "total"


@dataclass(frozen=True)
class Hierarchy:
    """A summing matrix and the nodes it is indexed by.

    Attributes
    ----------
    nodes
        ``level`` and ``node_id`` of each row of :attr:`S`: the aggregates (``"total"``
        first if requested, then each level in the given order, ids sorted), then the
        bottom level.  ``level`` is the hierarchy frame's column name (``"branch_id"``…).
    S
        Summing matrix, ``len(nodes) × len(bottom)``, 0/1 float.
    bottom
        The bottom node ids (meters), sorted: the columns of :attr:`S`.
    bottom_level
        Name of the bottom level's column.
    """

    nodes: pl.DataFrame
    S: np.ndarray
    bottom: tuple[str, ...]
    bottom_level: str

    @property
    def n_aggregates(self) -> int:
        return int(self.S.shape[0] - self.S.shape[1])


def summing_matrix(
    hierarchy: pl.DataFrame,
    *,
    bottom: str = "meter_id",
    levels: Sequence[str] | None = None,
    total: bool = False,
) -> Hierarchy:
    """Build the summing matrix of a hierarchy frame.

    Parameters
    ----------
    hierarchy
        One row per bottom node: the ``bottom`` column (e.g. ``meter_id``) and one column
        per aggregation level (e.g. ``branch_id``, ``company_id``, ``category``).  Levels
        need not nest (a grouped structure such as branch × category is fine).
    bottom
        Column of the bottom-level ids.
    levels
        Aggregation columns to use (default: every other column, in frame order).
    total
        Add a ``"total"`` node summing every bottom node.

    Returns
    -------
    Hierarchy

    Raises
    ------
    InvalidInputError
        Missing columns, null ids or repeated bottom ids.
    """
    if not isinstance(hierarchy, pl.DataFrame) or bottom not in hierarchy.columns:
        raise InvalidInputError(
            f"hierarchy: expected a polars.DataFrame with the bottom column {bottom!r} and one "
            f"column per level, got {getattr(hierarchy, 'columns', type(hierarchy).__name__)}"
        )
    levels = [c for c in hierarchy.columns if c != bottom] if levels is None else list(levels)
    absent = [c for c in levels if c not in hierarchy.columns]
    if absent or bottom in levels:
        raise InvalidInputError(
            f"hierarchy: expected level columns other than {bottom!r} among {hierarchy.columns}, "
            f"got levels={levels}"
        )
    if not levels and not total:
        raise InvalidInputError(
            "hierarchy: expected at least one aggregation level (or total=True)"
        )
    frame = hierarchy.select(pl.col(c).cast(pl.String) for c in [bottom, *levels])
    nulls = [c for c in frame.columns if frame.get_column(c).null_count()]
    if nulls:
        raise InvalidInputError(f"hierarchy: expected no null ids, but {nulls} have nulls")
    dup = frame.filter(pl.col(bottom).is_duplicated()).get_column(bottom).unique().sort()
    if dup.len():
        raise InvalidInputError(
            f"hierarchy: expected one row per {bottom}, got repeats of {dup.head(5).to_list()}"
        )
    frame = frame.sort(bottom)
    ids = frame.get_column(bottom).to_list()
    m = len(ids)
    blocks: list[np.ndarray] = []
    node_level: list[str] = []
    node_id: list[str] = []
    if total:
        blocks.append(np.ones((1, m)))
        node_level.append(TOTAL)
        node_id.append(TOTAL)
    for level in levels:
        col = frame.get_column(level)
        values = col.unique().sort().to_list()
        code = col.cast(pl.Enum(values)).to_physical().to_numpy()
        block = np.zeros((len(values), m))
        block[code, np.arange(m)] = 1.0
        blocks.append(block)
        node_level += [level] * len(values)
        node_id += values
    blocks.append(np.eye(m))
    node_level += [bottom] * m
    node_id += ids
    nodes = pl.DataFrame(
        {"level": node_level, "node_id": node_id}, schema={"level": pl.String, "node_id": pl.String}
    )
    return Hierarchy(nodes=nodes, S=np.vstack(blocks), bottom=tuple(ids), bottom_level=bottom)


def aggregate(
    frame: pl.DataFrame,
    hierarchy: pl.DataFrame,
    *,
    bottom: str = "meter_id",
    levels: Sequence[str] | None = None,
    total: bool = False,
    values: Sequence[str] = ("volume_m3",),
) -> pl.DataFrame:
    """Sum a per-meter frame up the hierarchy: the history (or bottom-up forecast) of
    every node.

    Parameters
    ----------
    frame
        ``meter_id`` (the ``bottom`` column), ``ts`` (UTC) and the ``values`` columns
        (additive quantities such as m³; a null makes the node's step null).
    hierarchy, bottom, levels, total
        As for :func:`summing_matrix`.
    values
        Columns to sum.

    Returns
    -------
    polars.DataFrame
        ``level``, ``node_id``, ``ts`` and the ``values`` columns for every node,
        the bottom level included.
    """
    h = summing_matrix(hierarchy, bottom=bottom, levels=levels, total=total)
    agg_levels = [
        lv
        for lv in h.nodes.get_column("level").unique(maintain_order=True).to_list()
        if lv not in (bottom,)
    ]
    src = (
        frame.rename({bottom: "_b"})
        if bottom in frame.columns
        else frame.rename({"meter_id": "_b"})
    )
    src = src.filter(pl.col("_b").is_in(list(h.bottom)))
    tree = hierarchy.select(
        pl.col(bottom).cast(pl.String).alias("_b"),
        *[pl.col(c).cast(pl.String) for c in agg_levels if c != TOTAL],
    )
    joined = src.join(tree, on="_b", how="left")
    sums = [pl.col(v).sum().alias(v) for v in values]
    nulls = [pl.col(v).null_count().alias(f"_n_{v}") for v in values]
    parts = []
    for level in agg_levels:
        key = pl.lit(TOTAL).alias("node_id") if level == TOTAL else pl.col(level).alias("node_id")
        part = (
            joined.group_by(key, "ts")
            .agg(*sums, *nulls)
            .with_columns(
                *[
                    pl.when(pl.col(f"_n_{v}") > 0).then(None).otherwise(pl.col(v)).alias(v)
                    for v in values
                ]
            )
            .select(pl.lit(level).alias("level"), "node_id", "ts", *values)
        )
        parts.append(part)
    parts.append(
        joined.select(pl.lit(bottom).alias("level"), pl.col("_b").alias("node_id"), "ts", *values)
    )
    return pl.concat(parts, how="vertical_relaxed").sort("level", "node_id", "ts")


def reconcile(
    forecasts: pl.DataFrame,
    hierarchy: pl.DataFrame | Hierarchy,
    *,
    method: Method = "mint_shrink",
    residuals: pl.DataFrame | None = None,
    bottom: str = "meter_id",
    levels: Sequence[str] | None = None,
    total: bool = False,
) -> pl.DataFrame:
    """Make base forecasts of every node coherent (parents = sum of children).

    Parameters
    ----------
    forecasts
        Base forecasts of every node and step: ``level`` (hierarchy column name, or
        ``"total"``), ``node_id``, ``ts`` (UTC), ``volume_m3`` and the 80 % bounds
        ``volume_m3_lo_80`` / ``volume_m3_hi_80`` (m³ per step).
    hierarchy
        The hierarchy frame (see :func:`summing_matrix`) or a built :class:`Hierarchy`.
    method
        One of :data:`METHODS` (see the module docstring).
    residuals
        ``level``, ``node_id``, ``ts``, ``residual_m3`` (actual − forecast, in-sample or
        backtest); steps where some node has no residual are dropped.  Required for
        ``wls_var`` and ``mint_shrink``.
    bottom, levels, total
        As for :func:`summing_matrix` (ignored when ``hierarchy`` is a Hierarchy).

    Returns
    -------
    polars.DataFrame
        ``level, node_id, ts, volume_m3, volume_m3_lo_80, volume_m3_hi_80, method``,
        sorted by level order, node and time.

    Raises
    ------
    InvalidParameterError
        Unknown method, or a residual-based method without (enough) residuals.
    InvalidInputError
        A node lacks a base forecast for a step, or forecasts name unknown nodes.
    """
    if method not in METHODS:
        raise InvalidParameterError(f"method: expected one of {METHODS}, got {method!r}")
    h = (
        hierarchy
        if isinstance(hierarchy, Hierarchy)
        else summing_matrix(hierarchy, bottom=bottom, levels=levels, total=total)
    )
    n, m = h.S.shape
    y_hat, lo, hi, steps = _pivot_forecasts(forecasts, h)

    corr: np.ndarray | None = None
    w: np.ndarray | None = None
    if residuals is not None:
        r = _pivot_residuals(residuals, h)
        cov, shrunk, _ = _shrink_covariance(r)
        sd = np.sqrt(np.diag(cov))
        corr = shrunk / np.outer(sd, sd)
        if method == "mint_shrink":
            w = shrunk
        elif method == "wls_var":
            w = np.diag(np.diag(cov))
    elif method in ("wls_var", "mint_shrink"):
        raise InvalidParameterError(
            f"method={method!r}: expected `residuals` (level, node_id, ts, residual_m3 of every "
            f"node, e.g. from a backtest) to estimate the error covariance; pass them, or use "
            f"method='wls_struct' which needs none"
        )
    if method == "bottom_up":
        p = np.zeros((n, n))
        p[:, n - m :] = h.S
    else:
        if method == "ols":
            w = np.eye(n)
        elif method == "wls_struct":
            w = np.diag(h.S.sum(axis=1))
        assert w is not None
        p = _projection(w, h.S)

    y_rec = p @ y_hat
    # Intervals: reconciled error variance diag(P Σ_t Pᵀ), Σ_t = diag(σ_t) C diag(σ_t).
    sigma = np.maximum(hi - lo, 0.0) / (2.0 * Z80)
    if corr is None:
        var = (p * p) @ (sigma * sigma)
    else:
        var = np.empty_like(sigma)
        for t in range(sigma.shape[1]):
            mt = p * sigma[:, t][None, :]
            var[:, t] = np.einsum("ij,jk,ik->i", mt, corr, mt)
    half = Z80 * np.sqrt(np.maximum(var, 0.0))
    width = hi - lo
    share_lo = np.divide(y_hat - lo, width, out=np.full_like(width, 0.5), where=width > 0)
    share_lo = np.clip(share_lo, 0.0, 1.0)
    lo_rec = np.maximum(y_rec - 2.0 * share_lo * half, 0.0)
    hi_rec = np.maximum(y_rec + 2.0 * (1.0 - share_lo) * half, 0.0)
    if method == "bottom_up":  # the meters keep their own bounds exactly
        lo_rec[n - m :], hi_rec[n - m :] = lo[n - m :], hi[n - m :]

    t_count = len(steps)
    return pl.DataFrame(
        {
            "level": np.repeat(h.nodes.get_column("level").to_numpy(), t_count),
            "node_id": np.repeat(h.nodes.get_column("node_id").to_numpy(), t_count),
            "ts": pl.Series(steps * n).cast(pl.Datetime("us", "UTC")),
            "volume_m3": y_rec.ravel(),
            "volume_m3_lo_80": lo_rec.ravel(),
            "volume_m3_hi_80": hi_rec.ravel(),
            "method": method,
        },
        schema={
            "level": pl.String,
            "node_id": pl.String,
            "ts": pl.Datetime("us", "UTC"),
            "volume_m3": pl.Float64,
            "volume_m3_lo_80": pl.Float64,
            "volume_m3_hi_80": pl.Float64,
            "method": pl.String,
        },
    )


def _projection(w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``P = I − W U (Uᵀ W U)⁻¹ Uᵀ`` with ``Uᵀ = [I, −A]``, ``S = [A; I]``."""
    n, m = s.shape
    na = n - m
    ut = np.hstack([np.eye(na), -s[:na]])
    wu = w @ ut.T
    p: np.ndarray = np.eye(n) - wu @ np.linalg.solve(ut @ wu, ut)
    return p


def _shrink_covariance(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Sample covariance (uncentred, errors assumed mean-zero) of the residual matrix
    ``r`` (steps × nodes) and its Schäfer–Strimmer shrinkage towards the diagonal."""
    t = r.shape[0]
    cov = r.T @ r / t
    d = np.diag(cov).copy()
    floor = 1e-12 * (float(d.mean()) if d.size else 0.0) + 1e-300
    d = np.maximum(d, floor)
    np.fill_diagonal(cov, d)
    xs = r / np.sqrt(d)[None, :]
    corr = xs.T @ xs / t
    v = (1.0 / (t * (t - 1))) * ((xs * xs).T @ (xs * xs) - (xs.T @ xs) ** 2 / t)
    np.fill_diagonal(v, 0.0)
    dev = corr - np.eye(corr.shape[0])
    np.fill_diagonal(dev, 0.0)
    denom = float((dev * dev).sum())
    lam = 1.0 if denom <= 0 else min(max(float(v.sum()) / denom, 0.0), 1.0)
    shrunk = lam * np.diag(d) + (1.0 - lam) * cov
    np.fill_diagonal(shrunk, d)
    return cov, shrunk, lam


def shrinkage_intensity(residuals: np.ndarray) -> float:
    """The Schäfer–Strimmer shrinkage intensity λ in ``[0, 1]`` of a residual matrix
    (steps × series): 1 keeps only the variances, 0 the full sample covariance."""
    return _shrink_covariance(np.asarray(residuals, dtype=np.float64))[2]


def _node_index(frame: pl.DataFrame, h: Hierarchy, what: str) -> pl.DataFrame:
    absent = [c for c in ("level", "node_id", "ts") if c not in frame.columns]
    if absent:
        raise InvalidInputError(
            f"{what}: expected columns level, node_id, ts, got {frame.columns} ({absent} missing)"
        )
    idx = h.nodes.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
    joined = frame.with_columns(
        pl.col("level").cast(pl.String), pl.col("node_id").cast(pl.String)
    ).join(idx, on=["level", "node_id"], how="left")
    unknown = joined.filter(pl.col("_row").is_null()).select("level", "node_id").unique()
    if unknown.height:
        raise InvalidInputError(
            f"{what}: {unknown.height} (level, node_id) pair(s) are not in the hierarchy, e.g. "
            f"{unknown.head(3).rows()}; levels are {h.nodes.get_column('level').unique().to_list()}"
        )
    if joined.select("_row", "ts").is_duplicated().any():
        raise InvalidInputError(f"{what}: expected one row per (level, node_id, ts)")
    return joined


def _pivot_forecasts(
    forecasts: pl.DataFrame, h: Hierarchy
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[object]]:
    cols = ["volume_m3", "volume_m3_lo_80", "volume_m3_hi_80"]
    absent = [c for c in cols if c not in forecasts.columns]
    if absent:
        raise InvalidInputError(f"forecasts: expected columns {cols}, {absent} are missing")
    joined = _node_index(forecasts, h, "forecasts")
    steps = joined.get_column("ts").unique().sort().to_list()
    n, t = h.S.shape[0], len(steps)
    if (
        joined.height != n * t
        or joined.select(
            pl.any_horizontal(pl.col(c).is_null() | pl.col(c).is_nan() for c in cols).any()
        ).item()
    ):
        have = joined.group_by("_row").len()
        short = (
            h.nodes.with_row_index("_row")
            .with_columns(pl.col("_row").cast(pl.Int64))
            .join(have, on="_row", how="left")
            .filter(pl.col("len").fill_null(0) < t)
        )
        raise InvalidInputError(
            f"forecasts: expected a base forecast (with bounds, no nulls) for each of the {n} "
            f"nodes at each of the {t} steps; {short.height} node(s) lack some, e.g. "
            f"{short.select('level', 'node_id').head(3).rows()}; forecast every node first"
        )
    ts_index = (
        pl.DataFrame({"ts": steps}).with_row_index("_t").with_columns(pl.col("_t").cast(pl.Int64))
    )
    joined = joined.join(ts_index, on="ts", how="left")
    r = joined.get_column("_row").to_numpy()
    c = joined.get_column("_t").to_numpy()
    out = []
    for col in cols:
        a = np.empty((n, t))
        a[r, c] = joined.get_column(col).to_numpy()
        out.append(a)
    return out[0], out[1], out[2], steps


def _pivot_residuals(residuals: pl.DataFrame, h: Hierarchy) -> np.ndarray:
    if "residual_m3" not in residuals.columns:
        raise InvalidInputError(
            f"residuals: expected columns level, node_id, ts, residual_m3, got {residuals.columns}"
        )
    joined = _node_index(residuals, h, "residuals").filter(
        pl.col("residual_m3").is_not_null() & pl.col("residual_m3").is_not_nan()
    )
    n = h.S.shape[0]
    complete = joined.group_by("ts").len().filter(pl.col("len") == n).select("ts").sort("ts")
    if complete.height < 3:
        raise InvalidParameterError(
            f"residuals: expected at least 3 steps with a residual for every one of the {n} "
            f"nodes, got {complete.height}; backtest every node on the same steps"
        )
    joined = joined.join(
        complete.with_row_index("_t").with_columns(pl.col("_t").cast(pl.Int64)),
        on="ts",
        how="inner",
    )
    r: np.ndarray = np.empty((complete.height, n))
    r[joined.get_column("_t").to_numpy(), joined.get_column("_row").to_numpy()] = joined.get_column(
        "residual_m3"
    ).to_numpy()
    return r
