-- Schema version 5: the consolidated gas-day cube (issue 4; warehouse/_cubes.py).
-- One row per cell of the five groupings of the consolidated report.  Rolled-up
-- dimensions hold '' and rolled-up calendar parts -1, so the grouping is the primary key.
-- Calendar parts are the company's gas calendar: year/month of the gas day, day of
-- month of the gas day, hour of the gas day (0 .. 22/23/24 on DST days).
-- The incremental refresh deletes and rewrites cells by gas_day (hour and day cells)
-- and by period/year/month (coarser cells): both have an index.
CREATE TABLE gas_cube (
    dims              text NOT NULL,
    period            text NOT NULL,
    company_id        text NOT NULL,
    branch_id         text NOT NULL,
    resource          text NOT NULL,
    year              smallint NOT NULL,
    month             smallint NOT NULL,
    day               smallint NOT NULL,
    hour              smallint NOT NULL,
    gas_day           date,
    ts                timestamptz,
    local_hour        smallint,
    meters            integer NOT NULL,
    volume_m3         double precision,
    energy_kwh        double precision,
    hours             bigint NOT NULL,
    expected_hours    bigint NOT NULL,
    completeness      double precision,
    estimated_hours   bigint NOT NULL,
    share_estimated   double precision,
    pressure_kpa_min  double precision,
    pressure_kpa_avg  double precision,
    pressure_kpa_max  double precision,
    pressure_hours    bigint NOT NULL,
    temperature_c_min double precision,
    temperature_c_avg double precision,
    temperature_c_max double precision,
    temperature_hours bigint NOT NULL,
    PRIMARY KEY (dims, period, company_id, branch_id, resource, year, month, day, hour)
);
CREATE INDEX gas_cube_gas_day ON gas_cube (gas_day) WHERE gas_day IS NOT NULL;
CREATE INDEX gas_cube_period ON gas_cube (period, year, month);
