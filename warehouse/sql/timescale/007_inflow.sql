-- Schema version 7, TimescaleDB variant: node_inflow as a hypertable.
-- Applied right after warehouse/sql/postgres/007_inflow.sql in the same transaction.
-- One row per node and hour: a few hundred nodes give ~100x fewer rows than the
-- hourly archive, hence 30-day chunks.  Like the hourly archive it is a commercial
-- record (the gas bought), so it gets neither compression nor retention here.

CREATE TABLE node_inflow (
    node_id   text NOT NULL,
    ts        timestamptz NOT NULL,
    volume_m3 double precision,
    quality   text NOT NULL,
    source    text NOT NULL,
    PRIMARY KEY (node_id, ts)
);
SELECT create_hypertable('node_inflow', by_range('ts', INTERVAL '30 days'));
