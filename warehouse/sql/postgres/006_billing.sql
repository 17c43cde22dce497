-- Schema version 6: the record of billing uploads (issue 4, analytics._billing).
-- Shared by both variants (an ordinary table), so there is no timescale/ or
-- postgres_plain/ part for this version.
-- One row per attempt to deliver a billing file (1C exchange XML or CSV) for a period:
-- what was sent (checksums, accounts, total volume), when, to where, and how it went.

CREATE TABLE billing_uploads (
    upload_id   text PRIMARY KEY,
    ts          timestamptz NOT NULL,
    period      text NOT NULL,
    fmt         text NOT NULL CHECK (fmt IN ('xml', 'csv')),
    destination text NOT NULL,
    scope       text NOT NULL,
    revision    integer NOT NULL,
    file_name   text NOT NULL,
    accounts    integer NOT NULL,
    volume_m3   double precision,
    data_sha256 text NOT NULL,
    file_sha256 text,
    bytes       bigint,
    status      text NOT NULL CHECK (status IN ('sent', 'failed', 'unchanged')),
    detail      text
);
CREATE INDEX billing_uploads_period ON billing_uploads (period, fmt, destination, scope, ts);
