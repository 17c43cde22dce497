-- askug schema v1, TimescaleDB variant: the time-series tables.
-- Applied right after warehouse/sql/postgres/001_core.sql in the same transaction.
--
-- * readings, hourly_archive, events are hypertables partitioned on ts.
-- * daily_archive and monthly_archive are continuous aggregates (hourly -> daily ->
--   monthly, hierarchical) with exactly the contract's columns, so the store reads
--   them like tables.  They are materialized-only: Store.refresh_rollups() calls
--   refresh_continuous_aggregate() for the touched days/months, and the refresh
--   policies below keep them current in production.  They are derived data: write
--   hourly_archive, never the rollups.
-- * raw readings are compressed after 30 days and dropped after 3 years; the hourly
--   archive (the billing record) is kept.  Adjust with alter_job() per site.

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE readings (
    device_id   text NOT NULL,
    channel     text NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision,
    quality     text NOT NULL,
    received_at timestamptz,
    PRIMARY KEY (device_id, channel, ts)
);
SELECT create_hypertable('readings', by_range('ts', INTERVAL '1 day'));

CREATE TABLE hourly_archive (
    meter_id       text NOT NULL,
    ts             timestamptz NOT NULL,
    volume_m3      double precision,
    volume_work_m3 double precision,
    pressure_kpa   double precision,
    temperature_c  double precision,
    quality        text NOT NULL,
    source         text NOT NULL,
    PRIMARY KEY (meter_id, ts)
);
SELECT create_hypertable('hourly_archive', by_range('ts', INTERVAL '7 days'));

CREATE TABLE events (
    device_id text NOT NULL,
    ts        timestamptz NOT NULL,
    code      text NOT NULL,
    severity  text NOT NULL,
    detail    text,
    PRIMARY KEY (device_id, ts, code)
);
SELECT create_hypertable('events', by_range('ts', INTERVAL '30 days'));

-- Daily rollup of the hourly archive (UTC days).  hours = hours with a value;
-- quality = worst quality of its hours.
CREATE MATERIALIZED VIEW daily_archive
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT meter_id,
       time_bucket(INTERVAL '1 day', ts) AS ts,
       sum(volume_m3) AS volume_m3,
       count(volume_m3)::smallint AS hours,
       askug_quality_from_rank(max(askug_quality_rank(quality))) AS quality
FROM hourly_archive
GROUP BY meter_id, time_bucket(INTERVAL '1 day', ts)
WITH NO DATA;

-- Monthly rollup (UTC months), built on the daily one.
CREATE MATERIALIZED VIEW monthly_archive
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT meter_id,
       time_bucket(INTERVAL '1 month', ts) AS ts,
       sum(volume_m3) AS volume_m3,
       sum(hours)::integer AS hours,
       askug_quality_from_rank(max(askug_quality_rank(quality))) AS quality
FROM daily_archive
GROUP BY meter_id, time_bucket(INTERVAL '1 month', ts)
WITH NO DATA;

-- Units call in monthly, weekly or daily sessions, so an hour can arrive weeks late:
-- the policies re-aggregate a window that covers the longest session period.
SELECT add_continuous_aggregate_policy('daily_archive',
    start_offset => INTERVAL '45 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '1 hour');
SELECT add_continuous_aggregate_policy('monthly_archive',
    start_offset => INTERVAL '3 months', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 day');

ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id, channel',
    timescaledb.compress_orderby = 'ts'
);
SELECT add_compression_policy('readings', INTERVAL '30 days');
SELECT add_retention_policy('readings', INTERVAL '3 years');
