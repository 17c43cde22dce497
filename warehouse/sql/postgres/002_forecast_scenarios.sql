-- Schema version 2: forecasts carry the temperature scenario they were conditioned on.
-- Shared by both variants (forecasts is an ordinary table in each), so there is no
-- timescale/ or postgres_plain/ part for this version.
-- Rows stored before scenarios existed were conditioned on the weather table: 'observed'
-- (ADD COLUMN with a constant default fills them without rewriting the table).
ALTER TABLE forecasts ADD COLUMN scenario text NOT NULL DEFAULT 'observed';
ALTER TABLE forecasts ALTER COLUMN scenario DROP DEFAULT;
ALTER TABLE forecasts DROP CONSTRAINT forecasts_pkey;
ALTER TABLE forecasts ADD PRIMARY KEY (meter_id, ts, model, cutoff, scenario);
