"""Export benchmark: N rows to every format, streamed, with seconds and peak memory.

Each format runs in a fresh process (``spawn``) so its peak memory (max RSS) is its own.
Rows are hourly-archive-like (``meter_id``, ``ts`` UTC, ``volume_m3``, ``pressure_kpa``,
``quality``, ``name`` — a Cyrillic address) generated in batches by Polars inside the worker, so the source
never holds all rows.  Two references run in the same way on the same rows:

* ``baseline``  — the process generating every batch and writing nothing (the floor of
  time and memory every export pays);
* ``csv-whole`` — all rows collected into one frame and written with Polars'
  ``write_csv`` (the fastest non-streamed writer: what streaming saves in memory).

Usage::

    .venv/bin/python bench/export.py                 # 1,000,000 rows, every format
    .venv/bin/python bench/export.py --rows 20000    # smoke run
    .venv/bin/python bench/export.py --formats csv,xlsx --batch 100000
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FORMATS = ("csv", "xlsx", "dbf", "pdf", "json", "jsonl", "xml", "txt")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _batches(rows: int, batch: int) -> Iterator[Any]:
    import datetime as dt

    import polars as pl

    start = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
    meters = 1000
    for lo in range(0, rows, batch):
        n = min(batch, rows - lo)
        yield pl.select(i=pl.int_range(lo, lo + n, dtype=pl.Int64)).select(
            meter_id=pl.format("M{}", (pl.col("i") % meters).cast(pl.String).str.pad_start(6, "0")),
            ts=pl.lit(start) + pl.duration(hours=pl.col("i") // meters),
            volume_m3=(pl.col("i") % 97).cast(pl.Float64) * 0.137 + 0.5,
            pressure_kpa=pl.when(pl.col("i") % 50 == 0).then(None).otherwise(101.3 + (pl.col("i") % 7) * 0.1),
            quality=pl.when(pl.col("i") % 40 == 0).then(pl.lit("estimated")).otherwise(pl.lit("valid")),
            name=pl.format("кв. {}, ул. Ленина", pl.col("i") % meters),  # Cyrillic: the PDF embeds its font
        )


def _worker(kind: str, rows: int, batch: int, folder: str) -> tuple[float, float, int]:
    """Run one step in this (fresh) process: (seconds, peak MB, bytes written)."""
    import polars as pl

    from analytics import write_export

    started = time.perf_counter()
    size = 0
    if kind == "baseline":
        for frame in _batches(rows, batch):
            size += frame.height * 0  # touch the batch, write nothing
    elif kind == "csv-whole":
        frame = pl.concat(list(_batches(rows, batch)))
        out = Path(folder) / "whole.csv"
        frame.write_csv(out)
        size = out.stat().st_size
    else:
        summary = write_export(_batches(rows, batch), Path(folder) / f"bench.{kind}", kind, title="bench")
        size = summary.bytes
    return time.perf_counter() - started, _peak_mb(), size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per export (default 1,000,000)")
    parser.add_argument("--batch", type=int, default=50_000, help="rows per batch (default 50,000)")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated subset of " + ",".join(FORMATS))
    parser.add_argument("--quick", action="store_true", help="smoke run: 20,000 rows")
    parser.add_argument("--dir", default=None, help="folder for the files (default: a temporary folder on disk)")
    args = parser.parse_args(argv)
    rows = 20_000 if args.quick else args.rows
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        parser.error(f"unknown formats {bad}; choose from {','.join(FORMATS)}")
    ctx = mp.get_context("spawn")
    results: list[tuple[str, float, float, int]] = []
    with tempfile.TemporaryDirectory(prefix="askug-bench-export-", dir=args.dir or "/var/tmp") as folder:
        for kind in ("baseline", "csv-whole", *formats):
            with ctx.Pool(1) as pool:
                seconds, peak, size = pool.apply(_worker, (kind, rows, args.batch, folder))
            results.append((kind, seconds, peak, size))
            print(f"  {kind:<10} {seconds:8.2f} s  {peak:8.0f} MB  {size / 1e6:9.1f} MB file", flush=True)
    base_s, base_mb = results[0][1], results[0][2]
    whole_s, whole_mb = results[1][1], results[1][2]
    print()
    print(f"export of {rows:,} rows in batches of {args.batch:,} (each step in a fresh process)")
    print()
    print("| format | seconds | rows/s | peak MB | MB over baseline | × csv-whole time | file MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, seconds, peak, size in results:
        rate = rows / seconds if seconds > 0 else float("inf")
        print(
            f"| {kind} | {seconds:.2f} | {rate:,.0f} | {peak:.0f} | {peak - base_mb:+.0f} | "
            f"{seconds / whole_s:.2f} | {size / 1e6:.1f} |"
        )
    print()
    print(
        f"baseline (generate only): {base_s:.2f} s, {base_mb:.0f} MB; "
        f"csv-whole (all rows in memory): {whole_s:.2f} s, {whole_mb:.0f} MB "
        f"(+{whole_mb - base_mb:.0f} MB over baseline — what streaming avoids)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
