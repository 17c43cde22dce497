-- Schema version 5: the consolidated gas-day cube (issue 4; warehouse/_cubes.py).
-- One row per cell of the five groupings of the consolidated report.  Rolled-up
-- dimensions hold '' and rolled-up calendar parts -1, so the grouping is the key.
-- Calendar parts are the company's gas calendar: year/month of the gas day, day of
-- month of the gas day, hour of the gas day (0 .. 22/23/24 on DST days).
-- No key index (see 001_core.sql): a full build replaces the table, and an incremental
-- refresh deletes and rewrites the touched cells by gas_day / period / year / month.
CREATE TABLE gas_cube (
    dims              VARCHAR NOT NULL,
    period            VARCHAR NOT NULL,
    company_id        VARCHAR NOT NULL,
    branch_id         VARCHAR NOT NULL,
    resource          VARCHAR NOT NULL,
    year              SMALLINT NOT NULL,
    month             TINYINT NOT NULL,
    day               TINYINT NOT NULL,
    hour              TINYINT NOT NULL,
    gas_day           DATE,
    ts                TIMESTAMPTZ,
    local_hour        TINYINT,
    meters            INTEGER NOT NULL,
    volume_m3         DOUBLE,
    energy_kwh        DOUBLE,
    hours             BIGINT NOT NULL,
    expected_hours    BIGINT NOT NULL,
    completeness      DOUBLE,
    estimated_hours   BIGINT NOT NULL,
    share_estimated   DOUBLE,
    pressure_kpa_min  DOUBLE,
    pressure_kpa_avg  DOUBLE,
    pressure_kpa_max  DOUBLE,
    pressure_hours    BIGINT NOT NULL,
    temperature_c_min DOUBLE,
    temperature_c_avg DOUBLE,
    temperature_c_max DOUBLE,
    temperature_hours BIGINT NOT NULL
);
