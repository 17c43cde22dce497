-- Schema version 7, plain PostgreSQL variant: node_inflow with native range partitioning.
-- Applied right after warehouse/sql/postgres/007_inflow.sql in the same transaction.
-- As for hourly_archive (001_timeseries.sql): monthly partitions (node_inflow_pYYYYMM)
-- made by askug_ensure_partitions() before a load, and a DEFAULT partition that catches
-- rows written before their month exists; the primary key includes ts.

CREATE TABLE node_inflow (
    node_id   text NOT NULL,
    ts        timestamptz NOT NULL,
    volume_m3 double precision,
    quality   text NOT NULL,
    source    text NOT NULL,
    PRIMARY KEY (node_id, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE node_inflow_default PARTITION OF node_inflow DEFAULT;
