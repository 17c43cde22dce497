-- Schema version 7: metered hourly gas inflow of the network nodes (issue 4, gas balance).
-- The inlet meter of a GDP or station reports through its telemetry unit like any other
-- archive; analytics.balance_from_store balances it against the node's consumers.
-- A time-series table like hourly_archive (001_core.sql): no key index, the store keeps
-- it unique on (node_id, ts).

CREATE TABLE node_inflow (
    node_id   VARCHAR NOT NULL,
    ts        TIMESTAMPTZ NOT NULL,
    volume_m3 DOUBLE,
    quality   VARCHAR NOT NULL,
    source    VARCHAR NOT NULL
);
