-- askug schema v1 for PostgreSQL: the part shared by both variants.
--
-- Same tables, columns and natural keys as warehouse/sql/duckdb/001_core.sql.  Time
-- columns are timestamptz holding UTC instants (the store sets the session TimeZone to
-- UTC).  Every table's primary key is its natural key, so loads use
-- INSERT ... ON CONFLICT DO NOTHING.  The five time-series tables whose storage differs
-- between the variants (readings, hourly_archive, events and the daily/monthly rollups)
-- are created by 001_timeseries.sql of the variant, applied in the same transaction:
--   warehouse/sql/timescale/       hypertables + continuous aggregates (TimescaleDB)
--   warehouse/sql/postgres_plain/  native range partitioning + rollup tables
-- PostgreSQL has no 1-byte integer: TINYINT columns are smallint here and the store
-- casts them back to the contract's Int8.

CREATE TABLE companies (
    company_id    text PRIMARY KEY,
    name          text NOT NULL,
    time_zone     text NOT NULL,
    contract_hour smallint NOT NULL CHECK (contract_hour BETWEEN 0 AND 23)
);

CREATE TABLE branches (
    branch_id       text PRIMARY KEY,
    company_id      text NOT NULL,
    name            text NOT NULL,
    weather_station text
);

CREATE TABLE network_nodes (
    node_id        text PRIMARY KEY,
    branch_id      text NOT NULL,
    parent_node_id text,
    kind           text NOT NULL,
    name           text NOT NULL
);

CREATE TABLE metering_points (
    meter_id          text PRIMARY KEY,
    branch_id         text NOT NULL,
    node_id           text,
    name              text NOT NULL,
    resource          text NOT NULL,
    category          text NOT NULL,
    time_zone         text NOT NULL,
    contract_hour     smallint NOT NULL,
    std_temperature_c double precision,
    std_pressure_kpa  double precision
);

CREATE TABLE devices (
    device_id          text PRIMARY KEY,
    kind               text NOT NULL,
    meter_id           text,
    node_id            text,
    counter_modulus_m3 double precision,
    installed_at       timestamptz
);

CREATE TABLE contracts (
    meter_id         text NOT NULL,
    valid_from       date NOT NULL,
    valid_to         date,
    daily_limit_m3   double precision,
    monthly_limit_m3 double precision,
    monthly_plan_m3  double precision,
    PRIMARY KEY (meter_id, valid_from)
);

CREATE TABLE gdp_channels (
    node_id   text NOT NULL,
    channel   text NOT NULL,
    min_value double precision,
    max_value double precision,
    PRIMARY KEY (node_id, channel)
);

CREATE TABLE weather (
    station_id    text NOT NULL,
    ts            timestamptz NOT NULL,
    temperature_c double precision,
    quality       text NOT NULL,
    PRIMARY KEY (station_id, ts)
);

CREATE TABLE forecasts (
    meter_id        text NOT NULL,
    ts              timestamptz NOT NULL,
    model           text NOT NULL,
    cutoff          timestamptz NOT NULL,
    volume_m3       double precision NOT NULL,
    volume_m3_lo_80 double precision,
    volume_m3_hi_80 double precision,
    temperature_c   double precision,
    PRIMARY KEY (meter_id, ts, model, cutoff)
);

CREATE TABLE alerts (
    alert_id    text PRIMARY KEY,
    rule        text NOT NULL,
    object_kind text NOT NULL,
    object_id   text NOT NULL,
    channel     text,
    ts_start    timestamptz NOT NULL,
    ts_end      timestamptz,
    value       double precision,
    threshold   double precision,
    severity    text NOT NULL,
    state       text NOT NULL,
    message     text NOT NULL
);

-- The cube uses '' (not NULL) for "all" in a rolled-up dimension and -1 for a
-- rolled-up calendar part, so that the whole grouping is a primary key.
CREATE TABLE cube (
    level      text NOT NULL,
    company_id text NOT NULL,
    branch_id  text NOT NULL,
    resource   text NOT NULL,
    year       smallint NOT NULL,
    month      smallint NOT NULL,
    day        smallint NOT NULL,
    hour       smallint NOT NULL,
    volume_m3  double precision NOT NULL,
    meters     integer,
    "values"   bigint NOT NULL,
    missing    bigint NOT NULL,
    PRIMARY KEY (level, company_id, branch_id, resource, year, month, day, hour)
);

-- Worst quality of a bucket: valid < edited < estimated < suspect < missing
-- (same ranks as warehouse/_queries.py QUALITY_RANK_SQL).  IMMUTABLE so that the
-- TimescaleDB continuous aggregates may use them.
CREATE FUNCTION askug_quality_rank(quality text) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE quality WHEN 'valid' THEN 0 WHEN 'edited' THEN 1 WHEN 'estimated' THEN 2
                    WHEN 'suspect' THEN 3 ELSE 4 END;

CREATE FUNCTION askug_quality_from_rank(rank integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE rank WHEN 0 THEN 'valid' WHEN 1 THEN 'edited' WHEN 2 THEN 'estimated'
                 WHEN 3 THEN 'suspect' ELSE 'missing' END;
