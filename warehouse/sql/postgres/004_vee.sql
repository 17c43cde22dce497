-- Schema version 4: VEE findings and the audit trail of estimates and edits (issue 4).
-- Shared by both variants (ordinary tables), so there is no timescale/ or
-- postgres_plain/ part for this version.
--
-- The audit trail is append-only and never rewritten: a trigger refuses UPDATE, DELETE
-- and TRUNCATE for every role (the table owner included), so even a mistaken
-- `Store.replace('audit_trail', …)` or a manual psql session cannot change history.
-- Correcting an edit means appending a new edit.

CREATE TABLE vee_findings (
    meter_id  text NOT NULL,
    rule      text NOT NULL,
    ts        timestamptz NOT NULL,
    ts_end    timestamptz NOT NULL,
    intervals integer NOT NULL,
    quality   text NOT NULL,
    severity  text NOT NULL,
    value     double precision,
    expected  double precision,
    detail    text,
    found_at  timestamptz NOT NULL,
    PRIMARY KEY (meter_id, rule, ts)
);
CREATE INDEX vee_findings_ts ON vee_findings (ts);

CREATE TABLE audit_trail (
    audit_id    text PRIMARY KEY,
    meter_id    text NOT NULL,
    ts          timestamptz NOT NULL,
    table_name  text NOT NULL,
    column_name text NOT NULL,
    old_value   double precision,
    new_value   double precision,
    old_quality text,
    new_quality text NOT NULL,
    method      text NOT NULL,
    reason      text NOT NULL,
    changed_by  text NOT NULL,
    changed_at  timestamptz NOT NULL
);
CREATE INDEX audit_trail_meter_ts ON audit_trail (meter_id, ts);

CREATE FUNCTION askug_audit_trail_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_trail is append-only: % is not allowed; record a correction as a new edit', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_trail_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_trail
    FOR EACH ROW EXECUTE FUNCTION askug_audit_trail_append_only();

CREATE TRIGGER audit_trail_no_truncate
    BEFORE TRUNCATE ON audit_trail
    FOR EACH STATEMENT EXECUTE FUNCTION askug_audit_trail_append_only();
