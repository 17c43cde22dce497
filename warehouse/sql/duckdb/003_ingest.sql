-- Schema version 3: landing of telemetry over the wire (issue 3).  Same tables, columns
-- and keys as warehouse/sql/postgres/003_ingest.sql.  raw_packets and
-- device_daily_archive grow with the traffic, so like the other time series they carry
-- no key index (warehouse/_landing.py keeps them unique with anti-joins, one writer at a
-- time); the small control tables have their natural key as primary key.

CREATE TABLE raw_packets (
    sha256      VARCHAR NOT NULL,
    raw_hex     VARCHAR NOT NULL,
    size_bytes  INTEGER NOT NULL,
    transport   VARCHAR NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    device_id   VARCHAR,
    profile     VARCHAR,
    counter     BIGINT,
    status      VARCHAR NOT NULL
);

CREATE TABLE quarantine (
    sha256         VARCHAR PRIMARY KEY,
    raw_hex        VARCHAR NOT NULL,
    transport      VARCHAR NOT NULL,
    received_at    TIMESTAMPTZ NOT NULL,
    device_id      VARCHAR,
    profile        VARCHAR,
    counter        BIGINT,
    reason         VARCHAR NOT NULL,
    detail         VARCHAR,
    reprocessed_at TIMESTAMPTZ
);

CREATE TABLE device_credentials (
    device_id     VARCHAR PRIMARY KEY,
    profile       VARCHAR NOT NULL,
    serial        BIGINT,
    kind          VARCHAR,
    device_group  VARCHAR NOT NULL,
    secret_hash   VARCHAR NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE device_counters (
    device_id        VARCHAR PRIMARY KEY,
    last_counter     BIGINT NOT NULL,
    last_device_time TIMESTAMPTZ,
    last_received_at TIMESTAMPTZ,
    frames           BIGINT NOT NULL
);

CREATE TABLE ingest_counters (
    day       DATE NOT NULL,
    transport VARCHAR NOT NULL,
    outcome   VARCHAR NOT NULL,
    reason    VARCHAR NOT NULL,
    shard     SMALLINT NOT NULL,
    packets   BIGINT NOT NULL,
    readings  BIGINT NOT NULL,
    PRIMARY KEY (day, transport, outcome, reason, shard)
);

CREATE TABLE session_schedules (
    device_group   VARCHAR NOT NULL,
    schedule_id    VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,
    day            SMALLINT,
    start_minute   SMALLINT,
    once_at        TIMESTAMPTZ,
    window_s       INTEGER NOT NULL,
    session_s      INTEGER NOT NULL,
    max_concurrent INTEGER NOT NULL,
    spread         VARCHAR NOT NULL,
    created_at     TIMESTAMPTZ,
    PRIMARY KEY (device_group, schedule_id)
);

CREATE SEQUENCE downlink_command_seq START 1;
CREATE TABLE downlink_commands (
    command_id      BIGINT PRIMARY KEY DEFAULT nextval('downlink_command_seq'),
    device_id       VARCHAR NOT NULL,
    kind            VARCHAR NOT NULL,
    payload         VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    delivered_at    TIMESTAMPTZ,
    acknowledged_at TIMESTAMPTZ,
    attempts        INTEGER NOT NULL
);

CREATE TABLE device_daily_archive (
    device_id      VARCHAR NOT NULL,
    ts             TIMESTAMPTZ NOT NULL,
    volume_m3      DOUBLE,
    volume_work_m3 DOUBLE,
    pressure_kpa   DOUBLE,
    temperature_c  DOUBLE,
    quality        VARCHAR NOT NULL,
    received_at    TIMESTAMPTZ
);
