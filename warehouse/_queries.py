"""Runtime SQL of the warehouse, as named constants (DDL lives in ``warehouse/sql/``)."""

from __future__ import annotations

from typing import Final

# --- schema version bookkeeping (same table in every store) -------------------------
DUCKDB_CREATE_VERSION_TABLE: Final = """
CREATE TABLE IF NOT EXISTS askug_schema_version (
    version    INTEGER PRIMARY KEY,
    name       VARCHAR NOT NULL,
    variant    VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""
DUCKDB_HAS_VERSION_TABLE: Final = (
    "SELECT count(*) FROM information_schema.tables WHERE table_name = 'askug_schema_version'"
)
SELECT_SCHEMA_VERSION: Final = "SELECT max(version) FROM askug_schema_version"
INSERT_SCHEMA_VERSION: Final = (
    "INSERT INTO askug_schema_version (version, name, variant) VALUES (?, ?, ?)"
)

# --- rollups hourly -> daily / monthly (UTC buckets) ----------------------------------
# Quality of a bucket is the worst quality of its hours; ``hours`` counts hours with a value.
QUALITY_RANK_SQL: Final = (
    "CASE quality WHEN 'valid' THEN 0 WHEN 'edited' THEN 1 WHEN 'estimated' THEN 2 "
    "WHEN 'suspect' THEN 3 ELSE 4 END"
)
QUALITY_FROM_RANK_SQL: Final = (
    "CASE {rank} WHEN 0 THEN 'valid' WHEN 1 THEN 'edited' WHEN 2 THEN 'estimated' "
    "WHEN 3 THEN 'suspect' ELSE 'missing' END"
)

DUCKDB_ROLLUP_DELETE: Final = """
DELETE FROM {table}
WHERE ts >= date_trunc('{unit}', ?::TIMESTAMPTZ) AND ts < ?::TIMESTAMPTZ
"""

DUCKDB_ROLLUP_INSERT: Final = (
    """
INSERT INTO {table} (meter_id, ts, volume_m3, hours, quality)
SELECT meter_id,
       date_trunc('{unit}', ts) AS bucket,
       sum(volume_m3),
       count(volume_m3),
       """
    + QUALITY_FROM_RANK_SQL.format(rank="max(" + QUALITY_RANK_SQL + ")")
    + """
FROM hourly_archive
WHERE ts >= date_trunc('{unit}', ?::TIMESTAMPTZ)
  AND ts < ?::TIMESTAMPTZ + INTERVAL 1 {unit}
GROUP BY meter_id, bucket
HAVING bucket < ?::TIMESTAMPTZ
"""
)
