-- askug schema v1 for the embedded DuckDB store.
-- Time columns are TIMESTAMPTZ holding UTC instants; the session TimeZone is UTC.
-- Reference tables have their natural key as primary key.  The time-series tables do not:
-- an ART index over hundreds of millions of rows costs memory and made loads ~6x slower,
-- so the store keeps them unique itself (de-duplicated batch + anti-join on the natural key
-- within the batch's time range, which DuckDB's zone maps prune), one writer at a time.

CREATE TABLE companies (
    company_id    VARCHAR PRIMARY KEY,
    name          VARCHAR NOT NULL,
    time_zone     VARCHAR NOT NULL,
    contract_hour TINYINT NOT NULL CHECK (contract_hour BETWEEN 0 AND 23)
);

CREATE TABLE branches (
    branch_id       VARCHAR PRIMARY KEY,
    company_id      VARCHAR NOT NULL,
    name            VARCHAR NOT NULL,
    weather_station VARCHAR
);

CREATE TABLE network_nodes (
    node_id        VARCHAR PRIMARY KEY,
    branch_id      VARCHAR NOT NULL,
    parent_node_id VARCHAR,
    kind           VARCHAR NOT NULL,
    name           VARCHAR NOT NULL
);

CREATE TABLE metering_points (
    meter_id          VARCHAR PRIMARY KEY,
    branch_id         VARCHAR NOT NULL,
    node_id           VARCHAR,
    name              VARCHAR NOT NULL,
    resource          VARCHAR NOT NULL,
    category          VARCHAR NOT NULL,
    time_zone         VARCHAR NOT NULL,
    contract_hour     TINYINT NOT NULL,
    std_temperature_c DOUBLE,
    std_pressure_kpa  DOUBLE
);

CREATE TABLE devices (
    device_id          VARCHAR PRIMARY KEY,
    kind               VARCHAR NOT NULL,
    meter_id           VARCHAR,
    node_id            VARCHAR,
    counter_modulus_m3 DOUBLE,
    installed_at       TIMESTAMPTZ
);

CREATE TABLE contracts (
    meter_id         VARCHAR NOT NULL,
    valid_from       DATE NOT NULL,
    valid_to         DATE,
    daily_limit_m3   DOUBLE,
    monthly_limit_m3 DOUBLE,
    monthly_plan_m3  DOUBLE,
    PRIMARY KEY (meter_id, valid_from)
);

CREATE TABLE gdp_channels (
    node_id   VARCHAR NOT NULL,
    channel   VARCHAR NOT NULL,
    min_value DOUBLE,
    max_value DOUBLE,
    PRIMARY KEY (node_id, channel)
);

CREATE TABLE weather (
    station_id    VARCHAR NOT NULL,
    ts            TIMESTAMPTZ NOT NULL,
    temperature_c DOUBLE,
    quality       VARCHAR NOT NULL
);

CREATE TABLE readings (
    device_id   VARCHAR NOT NULL,
    channel     VARCHAR NOT NULL,
    ts          TIMESTAMPTZ NOT NULL,
    value       DOUBLE,
    quality     VARCHAR NOT NULL,
    received_at TIMESTAMPTZ
);

CREATE TABLE hourly_archive (
    meter_id       VARCHAR NOT NULL,
    ts             TIMESTAMPTZ NOT NULL,
    volume_m3      DOUBLE,
    volume_work_m3 DOUBLE,
    pressure_kpa   DOUBLE,
    temperature_c  DOUBLE,
    quality        VARCHAR NOT NULL,
    source         VARCHAR NOT NULL
);

CREATE TABLE daily_archive (
    meter_id  VARCHAR NOT NULL,
    ts        TIMESTAMPTZ NOT NULL,
    volume_m3 DOUBLE,
    hours     SMALLINT NOT NULL,
    quality   VARCHAR NOT NULL
);

CREATE TABLE monthly_archive (
    meter_id  VARCHAR NOT NULL,
    ts        TIMESTAMPTZ NOT NULL,
    volume_m3 DOUBLE,
    hours     INTEGER NOT NULL,
    quality   VARCHAR NOT NULL
);

CREATE TABLE events (
    device_id VARCHAR NOT NULL,
    ts        TIMESTAMPTZ NOT NULL,
    code      VARCHAR NOT NULL,
    severity  VARCHAR NOT NULL,
    detail    VARCHAR
);

CREATE TABLE forecasts (
    meter_id        VARCHAR NOT NULL,
    ts              TIMESTAMPTZ NOT NULL,
    model           VARCHAR NOT NULL,
    cutoff          TIMESTAMPTZ NOT NULL,
    volume_m3       DOUBLE NOT NULL,
    volume_m3_lo_80 DOUBLE,
    volume_m3_hi_80 DOUBLE,
    temperature_c   DOUBLE
);

CREATE TABLE alerts (
    alert_id    VARCHAR PRIMARY KEY,
    rule        VARCHAR NOT NULL,
    object_kind VARCHAR NOT NULL,
    object_id   VARCHAR NOT NULL,
    channel     VARCHAR,
    ts_start    TIMESTAMPTZ NOT NULL,
    ts_end      TIMESTAMPTZ,
    value       DOUBLE,
    threshold   DOUBLE,
    severity    VARCHAR NOT NULL,
    state       VARCHAR NOT NULL,
    message     VARCHAR NOT NULL
);

-- The cube uses '' (not NULL) for "all" in a rolled-up dimension and -1 for a
-- rolled-up calendar part, so that the whole grouping is a primary key.
CREATE TABLE cube (
    level      VARCHAR NOT NULL,
    company_id VARCHAR NOT NULL,
    branch_id  VARCHAR NOT NULL,
    resource   VARCHAR NOT NULL,
    year       SMALLINT NOT NULL,
    month      TINYINT NOT NULL,
    day        TINYINT NOT NULL,
    hour       TINYINT NOT NULL,
    volume_m3  DOUBLE NOT NULL,
    meters     INTEGER,
    "values"   BIGINT NOT NULL,
    missing    BIGINT NOT NULL,
    PRIMARY KEY (level, company_id, branch_id, resource, year, month, day, hour)
);
