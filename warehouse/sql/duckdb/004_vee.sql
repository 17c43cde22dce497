-- Schema version 4: VEE findings and the audit trail of estimates and edits (issue 4).
-- Like the other time-series tables (001_core.sql) neither carries a key index; the store
-- keeps them unique on the contract's key.  The audit trail is append-only: askug only
-- ever INSERTs into it (analytics._edit).  DuckDB has no triggers, so the database itself
-- cannot refuse an UPDATE or DELETE here; PostgreSQL does (see postgres/004_vee.sql).

CREATE TABLE vee_findings (
    meter_id  VARCHAR NOT NULL,
    rule      VARCHAR NOT NULL,
    ts        TIMESTAMPTZ NOT NULL,
    ts_end    TIMESTAMPTZ NOT NULL,
    intervals INTEGER NOT NULL,
    quality   VARCHAR NOT NULL,
    severity  VARCHAR NOT NULL,
    value     DOUBLE,
    expected  DOUBLE,
    detail    VARCHAR,
    found_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE audit_trail (
    audit_id    VARCHAR NOT NULL,
    meter_id    VARCHAR NOT NULL,
    ts          TIMESTAMPTZ NOT NULL,
    table_name  VARCHAR NOT NULL,
    column_name VARCHAR NOT NULL,
    old_value   DOUBLE,
    new_value   DOUBLE,
    old_quality VARCHAR,
    new_quality VARCHAR NOT NULL,
    method      VARCHAR NOT NULL,
    reason      VARCHAR NOT NULL,
    changed_by  VARCHAR NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL
);
