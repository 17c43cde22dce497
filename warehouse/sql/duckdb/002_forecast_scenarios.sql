-- Schema version 2: forecasts carry the temperature scenario they were conditioned on.
-- The natural key becomes (meter_id, ts, model, cutoff, scenario).  DuckDB keeps no
-- key index on forecasts (see 001_core.sql); the store's anti-join uses the contract's key.
-- Rows stored before scenarios existed were conditioned on the weather table: 'observed'.
ALTER TABLE forecasts ADD COLUMN scenario VARCHAR DEFAULT 'observed';
UPDATE forecasts SET scenario = 'observed' WHERE scenario IS NULL;
ALTER TABLE forecasts ALTER COLUMN scenario SET NOT NULL;
ALTER TABLE forecasts ALTER COLUMN scenario DROP DEFAULT;
