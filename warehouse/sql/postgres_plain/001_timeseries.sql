-- askug schema v1, plain PostgreSQL variant (no TimescaleDB): the time-series tables.
-- Applied right after warehouse/sql/postgres/001_core.sql in the same transaction.
--
-- * readings, hourly_archive, events use native declarative range partitioning on ts
--   with one partition per UTC month (<table>_pYYYYMM) and a DEFAULT partition that
--   catches anything written before its month exists.  The store calls
--   askug_ensure_partitions() with the months of each batch before loading it; the
--   function moves rows of that month out of the DEFAULT partition first, so the two
--   can never conflict.  The primary keys include ts, as partitioning requires.
-- * daily_archive and monthly_archive are ordinary tables rebuilt for a time range by
--   askug_refresh_rollups(); same semantics as the DuckDB store and the TimescaleDB
--   continuous aggregates.
-- * Retention is by dropping whole monthly partitions (DROP TABLE readings_p202001).

CREATE TABLE readings (
    device_id   text NOT NULL,
    channel     text NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision,
    quality     text NOT NULL,
    received_at timestamptz,
    PRIMARY KEY (device_id, channel, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE readings_default PARTITION OF readings DEFAULT;

CREATE TABLE hourly_archive (
    meter_id       text NOT NULL,
    ts             timestamptz NOT NULL,
    volume_m3      double precision,
    volume_work_m3 double precision,
    pressure_kpa   double precision,
    temperature_c  double precision,
    quality        text NOT NULL,
    source         text NOT NULL,
    PRIMARY KEY (meter_id, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE hourly_archive_default PARTITION OF hourly_archive DEFAULT;

CREATE TABLE events (
    device_id text NOT NULL,
    ts        timestamptz NOT NULL,
    code      text NOT NULL,
    severity  text NOT NULL,
    detail    text,
    PRIMARY KEY (device_id, ts, code)
) PARTITION BY RANGE (ts);
CREATE TABLE events_default PARTITION OF events DEFAULT;

CREATE TABLE daily_archive (
    meter_id  text NOT NULL,
    ts        timestamptz NOT NULL,
    volume_m3 double precision,
    hours     smallint NOT NULL,
    quality   text NOT NULL,
    PRIMARY KEY (meter_id, ts)
);

CREATE TABLE monthly_archive (
    meter_id  text NOT NULL,
    ts        timestamptz NOT NULL,
    volume_m3 double precision,
    hours     integer NOT NULL,
    quality   text NOT NULL,
    PRIMARY KEY (meter_id, ts)
);

-- Create the monthly partitions of `parent` that hold the instants in `months`
-- (any instant of the month will do).  Idempotent and safe under concurrent writers.
CREATE FUNCTION askug_ensure_partitions(parent text, months timestamptz[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    m        timestamptz;
    lo       timestamptz;
    hi       timestamptz;
    part     text;
    dflt     text := parent || '_default';
    created  integer := 0;
BEGIN
    FOR m IN SELECT DISTINCT date_trunc('month', x, 'UTC') FROM unnest(months) AS x ORDER BY 1
    LOOP
        lo := m;
        hi := (lo AT TIME ZONE 'UTC' + INTERVAL '1 month') AT TIME ZONE 'UTC';
        part := format('%s_p%s', parent, to_char(lo AT TIME ZONE 'UTC', 'YYYYMM'));
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        -- Serialise creators of this table's partitions; re-check after the wait.
        PERFORM pg_advisory_xact_lock(hashtext('askug_partition:' || parent));
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        -- A new partition may not overlap rows already in the DEFAULT partition:
        -- park them, create the partition, and put them back through the parent.
        EXECUTE format('CREATE TEMP TABLE askug_parked (LIKE %I) ON COMMIT DROP', parent);
        EXECUTE format(
            'WITH moved AS (DELETE FROM %I WHERE ts >= $1 AND ts < $2 RETURNING *) '
            'INSERT INTO askug_parked SELECT * FROM moved', dflt) USING lo, hi;
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                       part, parent, lo, hi);
        EXECUTE format('INSERT INTO %I SELECT * FROM askug_parked', parent);
        DROP TABLE askug_parked;
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

-- Rebuild the daily and monthly rollups of the UTC days/months touching [lo, hi)
-- (NULL = unbounded).  hours = hours with a value; quality = worst of its hours.
CREATE FUNCTION askug_refresh_rollups(lo timestamptz, hi timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    l timestamptz := coalesce(lo, '1970-01-01 00:00:00+00');
    h timestamptz := coalesce(hi, '9999-01-01 00:00:00+00');
BEGIN
    DELETE FROM daily_archive WHERE ts >= date_trunc('day', l, 'UTC') AND ts < h;
    INSERT INTO daily_archive (meter_id, ts, volume_m3, hours, quality)
    SELECT meter_id, date_trunc('day', ts, 'UTC') AS bucket, sum(volume_m3),
           count(volume_m3), askug_quality_from_rank(max(askug_quality_rank(quality)))
    FROM hourly_archive
    WHERE ts >= date_trunc('day', l, 'UTC') AND ts < h + INTERVAL '1 day'
    GROUP BY meter_id, bucket
    HAVING date_trunc('day', ts, 'UTC') < h;

    DELETE FROM monthly_archive WHERE ts >= date_trunc('month', l, 'UTC') AND ts < h;
    INSERT INTO monthly_archive (meter_id, ts, volume_m3, hours, quality)
    SELECT meter_id, date_trunc('month', ts, 'UTC') AS bucket, sum(volume_m3),
           count(volume_m3), askug_quality_from_rank(max(askug_quality_rank(quality)))
    FROM hourly_archive
    WHERE ts >= date_trunc('month', l, 'UTC')
      AND ts < (h AT TIME ZONE 'UTC' + INTERVAL '1 month') AT TIME ZONE 'UTC'
    GROUP BY meter_id, bucket
    HAVING date_trunc('month', ts, 'UTC') < h;
END
$$;
