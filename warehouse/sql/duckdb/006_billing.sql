-- Schema version 6: the record of billing uploads (issue 4, analytics._billing).
-- One row per attempt to deliver a billing file (1C exchange XML or CSV) for a period:
-- what was sent (checksums, accounts, total volume), when, to where, and how it went.
-- A small table: it keeps its natural key as primary key.

CREATE TABLE billing_uploads (
    upload_id   VARCHAR PRIMARY KEY,
    ts          TIMESTAMPTZ NOT NULL,
    period      VARCHAR NOT NULL,
    fmt         VARCHAR NOT NULL,
    destination VARCHAR NOT NULL,
    scope       VARCHAR NOT NULL,
    revision    INTEGER NOT NULL,
    file_name   VARCHAR NOT NULL,
    accounts    INTEGER NOT NULL,
    volume_m3   DOUBLE,
    data_sha256 VARCHAR NOT NULL,
    file_sha256 VARCHAR,
    bytes       BIGINT,
    status      VARCHAR NOT NULL,
    detail      VARCHAR
);
